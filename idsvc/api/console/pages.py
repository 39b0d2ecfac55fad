"""The console's pages: sign in and out, identities, an identity, enroll, search, verify, status, and crops by template
id. Every page needs a session (else a redirect to sign in); every form POST needs the session's CSRF token and, when
the browser sends one, an ``Origin`` of this server; each action needs the same scope as its API route. Work goes
through the same ``Service`` calls as the API (searches and verifies gathered with the API's), and a failure is shown
on the page with its stable code."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import math
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from idsvc.api import gather
from idsvc.api.console.render import render
from idsvc.api.console.sessions import Session, Sessions
from idsvc.api.deps import call, gathered, state
from idsvc.errors import IdsvcError
from idsvc.jobs.keys import SCOPES
from idsvc.results import Caller

router = APIRouter(prefix="/console", include_in_schema=False)
COOKIE = "idsvc_console"
PAGE_SIZE = 24


class SignInFirst(Exception):
    """No live session: the handler answers with a redirect to the sign-in page."""


def sessions(request: Request) -> Sessions:
    store: Sessions = request.app.state.console_sessions
    return store


def signed_in(request: Request) -> Session:
    """The request's live session, whose key is still unrevoked; else ``SignInFirst``."""
    sess = sessions(request).get(request.cookies.get(COOKIE))
    if sess is None:
        raise SignInFirst
    keys = state(request).service.list_keys().keys
    if not any(k.name == sess.key_name and k.revoked_at is None for k in keys):
        sessions(request).end(request.cookies.get(COOKIE))
        raise SignInFirst
    return sess


Signed = Depends(signed_in)


def allowed(sess: Session, needed: str) -> bool:
    return SCOPES.index(sess.scope) >= SCOPES.index(needed)


def check_post(request: Request, sess: Session, csrf: str, needed: str) -> None:
    """A form POST: the session's CSRF token, a same-origin ``Origin`` when sent, and the scope the action needs."""
    same_origin(request)
    if not secrets.compare_digest(csrf.encode(), sess.csrf.encode()):
        raise IdsvcError("forbidden", "the form's CSRF token is missing or stale; reload the page and try again")
    if not allowed(sess, needed):
        raise IdsvcError("forbidden", f"this needs a {needed} key; you signed in with a {sess.scope} key")


def same_origin(request: Request) -> None:
    """Refuse a form the browser says came from another site (``Origin``, when sent, must name this server)."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise IdsvcError("forbidden", "a form from another site was refused")


def page(request: Request, sess: Session | None, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    return HTMLResponse(render(template, request=request, session=sess, can_write=sess is not None and
                               allowed(sess, "write"), is_admin=sess is not None and allowed(sess, "admin"),
                               **ctx), status_code=status)


def failed(request: Request, sess: Session, template: str, exc: IdsvcError, **ctx: Any) -> HTMLResponse:
    return page(request, sess, template, status=exc.http_status, error=exc, **ctx)


def go(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def images(files: list[UploadFile]) -> list[tuple[bytes, str]]:
    return [(await f.read(), f.filename or "upload") for f in files if f.filename]


# -- sign in and out ----------------------------------------------------------------------------------------------
@router.get("")
async def home() -> RedirectResponse:
    return go("/console/identities")


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "/console/identities") -> HTMLResponse:
    return page(request, None, "sign_in.html", next=_local(next))


@router.post("/sign-in")
async def sign_in(request: Request, key: str = Form(""), next: str = Form("/console/identities")) -> Response:
    failures = request.app.state.console_failures
    client = f"auth-failures:{request.client.host if request.client else '?'}"
    try:
        same_origin(request)
        await asyncio.to_thread(failures.refuse_if_empty, client)  # out of attempts: not even looked up
        caller: Caller = await call(request, lambda s: s.authenticate(key.strip() or None, "read"), model=False)
    except IdsvcError as exc:
        if exc.code == "unauthorized":
            await asyncio.to_thread(failures.take, client)
        return page(request, None, "sign_in.html", status=exc.http_status, next=_local(next), error=exc)
    sid = sessions(request).start(caller)
    res = go(_local(next))
    res.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/console",
                   secure=request.url.scheme == "https")
    return res


@router.post("/sign-out")
async def sign_out(request: Request, sess: Session = Signed, csrf: str = Form("")) -> Response:
    check_post(request, sess, csrf, "read")
    sessions(request).end(request.cookies.get(COOKIE))
    res = go("/console/sign-in")
    res.delete_cookie(COOKIE, path="/console")
    return res


def _local(url: str) -> str:
    """Only a console path is a place to go after signing in (never another site)."""
    return url if url.startswith("/console/") and not url.startswith("//") else "/console/identities"


# -- identities ---------------------------------------------------------------------------------------------------
@router.get("/identities")
async def identities(request: Request, sess: Session = Signed, q: str = "", page_no: int = 1) -> HTMLResponse:
    everyone = (await call(request, lambda s: s.list_identities(), model=False)).identities
    shown = [i for i in everyone if q.casefold() in i.name.casefold()]
    pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
    page_no = min(max(1, page_no), pages)
    chunk = shown[(page_no - 1) * PAGE_SIZE: page_no * PAGE_SIZE]
    faces = await call(request, lambda s: {i.name: best_template(s, i.name) for i in chunk}, model=False)
    return page(request, sess, "identities.html", people=chunk, faces=faces, q=q, page_no=page_no, pages=pages,
                total=len(everyone), active="identities")


def best_template(s: Any, name: str) -> int | None:
    """The template whose crop stands for an identity: its best quality."""
    tpl = s.show_identity(name, server_paths=False).template_list
    return max(tpl, key=lambda t: t.quality or 0.0).id if tpl else None


@router.get("/identities/{name}")
async def identity(request: Request, name: str, sess: Session = Signed) -> HTMLResponse:
    try:
        detail = await call(request, lambda s: s.show_identity(name, server_paths=False), model=False)
    except IdsvcError as exc:
        return failed(request, sess, "identity.html", exc, person=None, active="identities")
    return page(request, sess, "identity.html", person=detail, active="identities")


async def _act(request: Request, sess: Session, csrf: str, needed: str, back: str,
               work: Callable[[Any], Any], done: Callable[[Any], str]) -> Response:
    """A form's action: checked, done, then a redirect (so a reload does not repeat it); a failure is shown on the
    page it came from."""
    try:
        check_post(request, sess, csrf, needed)
        result = await call(request, work, model=False)
    except IdsvcError as exc:
        if exc.code == "identity_not_found":
            return failed(request, sess, "identity.html", exc, person=None, active="identities")
        detail = None
        with contextlib.suppress(IdsvcError):
            detail = await call(request, lambda s: s.show_identity(back, server_paths=False), model=False)
        return failed(request, sess, "identity.html", exc, person=detail, active="identities")
    return go(done(result))


@router.post("/identities/{name}/rename")
async def rename(request: Request, name: str, sess: Session = Signed, csrf: str = Form(""),
                 new_name: str = Form("")) -> Response:
    return await _act(request, sess, csrf, "write", name, lambda s: s.rename_identity(name, new_name),
                      lambda r: f"/console/identities/{quote(r.name, safe='')}")


@router.post("/identities/{name}/delete")
async def delete_identity(request: Request, name: str, sess: Session = Signed, csrf: str = Form(""),
                          confirm: str = Form("")) -> Response:
    def work(s: Any) -> Any:
        if confirm != name:
            raise IdsvcError("invalid_argument", f"type the identity's name, {name!r}, to delete it")
        return s.delete_identity(name)

    return await _act(request, sess, csrf, "write", name, work, lambda _: "/console/identities")


@router.post("/templates/{template_id}/delete")
async def delete_template(request: Request, template_id: int, sess: Session = Signed, csrf: str = Form(""),
                          identity_name: str = Form("")) -> Response:
    return await _act(request, sess, csrf, "write", identity_name, lambda s: s.delete_template(template_id),
                      lambda _: f"/console/identities/{quote(identity_name, safe='')}")


@router.get("/crops/{template_id}")
async def crop(request: Request, template_id: int, _: Session = Signed) -> Response:
    try:
        data = await call(request, lambda s: s.template_crop(template_id), model=False)
    except IdsvcError as exc:
        return Response(exc.message, status_code=exc.http_status, media_type="text/plain",
                        headers={"Cache-Control": "private, no-store"})
    # private, and revalidated on every view: once signed out, a cached crop is not shown again
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-cache"})


# -- enroll -------------------------------------------------------------------------------------------------------
@router.get("/enroll")
async def enroll_page(request: Request, sess: Session = Signed, name: str = "") -> HTMLResponse:
    return page(request, sess, "enroll.html", name=name, active="enroll")


@router.post("/enroll")
async def enroll(request: Request, sess: Session = Signed, csrf: str = Form(""), name: str = Form(""),
                 photos: list[UploadFile] = File(default=[]),
                 folder: list[UploadFile] = File(default=[])) -> HTMLResponse:
    try:
        check_post(request, sess, csrf, "write")
        one, each = await images(photos), await images(folder)
        if one and not name.strip():
            raise IdsvcError("invalid_argument", "name the identity these photos are of")
        if not one and not each:
            raise IdsvcError("invalid_argument", "choose photos, or a folder of people folders")
        unnamed: list[Any] = []  # uploads without a PERSON/ folder (folder mode)
        if one:
            result = await call(request, lambda s: s.enroll(name.strip(), one, atomic=True), model=False)
            outcomes = [result]
        else:
            bulk = await call(request, lambda s: s.enroll_each(each, atomic=True), model=False)
            outcomes = list(bulk.identities)
            unnamed = bulk.unnamed
    except IdsvcError as exc:
        return failed(request, sess, "enroll.html", exc, name=name, active="enroll")
    return page(request, sess, "enroll.html", name=name, outcomes=outcomes, unnamed=unnamed, active="enroll")


# -- search and verify --------------------------------------------------------------------------------------------
@router.get("/search")
async def search_page(request: Request, sess: Session = Signed) -> HTMLResponse:
    return page(request, sess, "search.html", active="search")


@router.post("/search")
async def search(request: Request, sess: Session = Signed, csrf: str = Form(""),
                 photo: UploadFile | None = File(default=None)) -> HTMLResponse:
    try:
        check_post(request, sess, csrf, "read")
        got = await images([photo] if photo else [])
        if not got:
            raise IdsvcError("invalid_argument", "choose a photo to search")
        [item] = await gathered(request, gather.search, (5, True, None, False), got)
        result = item.result()
    except IdsvcError as exc:
        return failed(request, sess, "search.html", exc, active="search")
    return page(request, sess, "search.html", result=result, probe=preview(got[0][0]), active="search")


@router.get("/verify")
async def verify_page(request: Request, sess: Session = Signed) -> HTMLResponse:
    return page(request, sess, "verify.html", active="verify")


@router.post("/verify")
async def verify(request: Request, sess: Session = Signed, csrf: str = Form(""),
                 a: UploadFile | None = File(default=None), b: UploadFile | None = File(default=None)) -> HTMLResponse:
    try:
        check_post(request, sess, csrf, "read")
        pair = await images([f for f in (a, b) if f])
        if len(pair) != 2:
            raise IdsvcError("invalid_argument", "choose two photos")
        [item] = await gathered(request, gather.verify, (None, False), [(pair[0], pair[1])])
        result = item.result()
    except IdsvcError as exc:
        return failed(request, sess, "verify.html", exc, active="verify")
    return page(request, sess, "verify.html", result=result, photos=[preview(p[0]) for p in pair],
                names=[p[1] for p in pair], active="verify")


# -- status -------------------------------------------------------------------------------------------------------
@router.get("/status")
async def status(request: Request, sess: Session = Signed) -> HTMLResponse:
    return await _status(request, sess)


@router.post("/reindex")
async def reindex(request: Request, sess: Session = Signed, csrf: str = Form("")) -> HTMLResponse:
    try:
        check_post(request, sess, csrf, "admin")
        done = await call(request, lambda s: s.reindex(), model=True)
    except IdsvcError as exc:
        return await _status(request, sess, code=exc.http_status, error=exc)
    return await _status(request, sess, reindexed=done)


async def _status(request: Request, sess: Session, code: int = 200, **ctx: Any) -> HTMLResponse:
    admin = allowed(sess, "admin")

    def read(s: Any) -> dict[str, Any]:
        home = s.status(server_paths=admin)
        saved = [x for x in s.thresholds().thresholds if x.model_version == home.model.version]
        return {"home": home, "ready": s.readiness(), "card": s.model_card().card, "plots": s.calibration_plots(),
                "calibrated": max(saved, key=lambda x: x.created_at or "") if saved else None}

    found = await call(request, read, model=False)
    return page(request, sess, "status.html", code, active="status", **found, **ctx)


@router.get("/calibration/{name}")
async def calibration_plot(request: Request, name: str, _: Session = Signed) -> Response:
    try:
        data = await call(request, lambda s: s.calibration_plot(name), model=False)
    except IdsvcError as exc:  # no such plot: this page's URL names nothing
        return Response(exc.message, status_code=404 if exc.code == "file_not_found" else exc.http_status,
                        media_type="text/plain")
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-cache"})


def preview(data: bytes, longest: int = 640) -> dict[str, Any]:
    """The photo upright (EXIF applied, as the pipeline sees it) as a JPEG data URL at most ``longest`` px, with
    the scale from the pipeline's pixel coordinates to it. Called only on a photo the pipeline has already read."""
    from PIL import Image, ImageOps

    import idsvc.faces.images  # noqa: F401 - registers the HEIC opener

    with Image.open(io.BytesIO(data)) as img:
        upright = ImageOps.exif_transpose(img).convert("RGB")
    w, h = upright.size
    scale = min(1.0, longest / max(w, h))
    shown = upright.resize((max(1, round(w * scale)), max(1, round(h * scale)))) if scale < 1 else upright
    buf = io.BytesIO()
    shown.save(buf, format="JPEG", quality=85)
    return {"url": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), "width": shown.width,
            "height": shown.height, "scale": scale}
