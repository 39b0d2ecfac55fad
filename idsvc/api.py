"""The HTTP API: FastAPI routes under /v1 over the same Service the CLI uses.

Each route authenticates, calls one Service method in a worker thread (with a timeout) and returns its dict: the
same fields as the CLI's ``--json``. Errors become RFC 7807 problem details carrying the library's stable ``code``.
Within a worker process requests are serialised (the models are not shared across threads); run ``--workers N``
for parallel reads. Writes from any process (CLI, other workers) are serialised by the home's file lock, and each
request sees index changes made elsewhere (the manifest is re-checked on every search). Image bytes are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from idsvc.errors import IdsvcError
from idsvc.service import Service
from idsvc.settings import Settings, load_settings

log = logging.getLogger(__name__)
#: Starlette's own refusals (unknown route, wrong method, malformed multipart) as stable codes.
HTTP_CODES = {404: ("invalid_argument", 404), 405: ("invalid_argument", 405)}


def problem(exc: IdsvcError, status: int | None = None) -> JSONResponse:
    """An RFC 7807 problem body with the library's stable code; the status comes from the one error table."""
    status = status or exc.http_status
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(status_code=status, headers=headers, media_type="application/problem+json", content={
        "type": f"https://idsvc.dev/errors/{exc.code}", "title": exc.code.replace("_", " "), "status": status,
        "code": exc.code, "detail": exc.message, "details": exc.to_dict()["details"]})


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (by Content-Length, and by counting when it is absent)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and int(declared) > self.limit:
            return await problem(IdsvcError("too_large", f"request body is over {self.limit} bytes"))(
                scope, receive, send)
        seen = 0

        async def counted() -> MutableMapping[str, Any]:
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.limit:
                raise IdsvcError("too_large", f"request body is over {self.limit} bytes")
            return msg

        await self.app(scope, counted, send)


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1:
                self.buckets[key] = (tokens, now)
                raise IdsvcError("rate_limited", "too many requests for this API key; slow down")
            self.buckets[key] = (tokens - 1, now)


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    settings = settings or load_settings()
    svc = service or Service(settings)
    limiter = RateLimiter(settings.api_rate_per_minute)
    model_lock = threading.Lock()
    app = FastAPI(title="idsvc", version="1", description="Face identity service: enroll, search, verify.")

    @app.on_event("startup")
    async def _load() -> None:  # load models before the first request, not during it
        await asyncio.to_thread(svc.warm_up)

    @app.exception_handler(IdsvcError)
    async def _idsvc_error(_: Request, exc: IdsvcError) -> JSONResponse:
        return problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
                  for e in exc.errors()]  # never the input itself: it may be an upload's bytes
        first = errors[0] if errors else {"field": "?", "problem": "invalid request"}
        return problem(IdsvcError("invalid_argument", f"{first['field']}: {first['problem']}", errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, status = HTTP_CODES.get(exc.status_code, ("invalid_argument", exc.status_code))
        return problem(IdsvcError(code, str(exc.detail)), status)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return problem(IdsvcError("internal", f"internal error: {exc.__class__.__name__}"))

    async def call(fn: Callable[[], Any]) -> Any:
        def locked() -> Any:
            with model_lock:
                return fn()

        try:
            return await asyncio.wait_for(asyncio.to_thread(locked), settings.api_request_timeout_s)
        except asyncio.TimeoutError:
            raise IdsvcError("timeout", f"request took longer than {settings.api_request_timeout_s:g} s") from None

    def scope(needed: str) -> Callable[..., dict[str, Any]]:
        def dep(request: Request) -> dict[str, Any]:
            auth = request.headers.get("authorization", "")
            secret = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            key = svc.authenticate(secret, needed)
            limiter.check(key["name"])
            return key

        return dep

    async def image(upload: UploadFile) -> tuple[bytes, str]:
        return await upload.read(), upload.filename or "upload"

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/v1/status")
    async def status(_: dict = Depends(scope("read"))) -> dict[str, Any]:
        return await call(svc.status)

    @app.post("/v1/search")
    async def search(file: UploadFile = File(...), top_k: int = Form(5), all_faces: bool = Form(False),
                     threshold: float | None = Form(None), _: dict = Depends(scope("read"))) -> dict[str, Any]:
        img = await image(file)
        return await call(lambda: svc.search(img, top_k=top_k, all_faces=all_faces, threshold=threshold))

    @app.post("/v1/verify")
    async def verify(a: UploadFile = File(...), b: UploadFile = File(...), threshold: float | None = Form(None),
                     _: dict = Depends(scope("read"))) -> dict[str, Any]:
        ia, ib = await image(a), await image(b)
        return await call(lambda: svc.verify(ia, ib, threshold=threshold))

    @app.post("/v1/identities/{name}/verify")
    async def verify_identity(name: str, file: UploadFile = File(...), threshold: float | None = Form(None),
                              _: dict = Depends(scope("read"))) -> dict[str, Any]:
        img = await image(file)
        return await call(lambda: svc.verify_identity(img, name, threshold=threshold))

    @app.post("/v1/identities/{name}/enroll")
    async def enroll(name: str, files: list[UploadFile] = File(...),
                     _: dict = Depends(scope("write"))) -> dict[str, Any]:
        imgs = [await image(f) for f in files]
        return await call(lambda: svc.enroll_bytes(name, imgs))

    @app.get("/v1/identities")
    async def identities(_: dict = Depends(scope("read"))) -> dict[str, Any]:
        return {"identities": await call(svc.list_identities)}

    @app.get("/v1/identities/{name}")
    async def identity(name: str, _: dict = Depends(scope("read"))) -> dict[str, Any]:
        return await call(lambda: svc.show_identity(name))

    @app.patch("/v1/identities/{name}")
    async def rename(name: str, body: dict[str, str], _: dict = Depends(scope("write"))) -> dict[str, Any]:
        if "name" not in body:
            raise IdsvcError("invalid_argument", "body must be {\"name\": NEW_NAME}")
        return await call(lambda: svc.rename_identity(name, body["name"]))

    @app.delete("/v1/identities/{name}")
    async def delete(name: str, _: dict = Depends(scope("write"))) -> dict[str, Any]:
        return await call(lambda: svc.delete_identity(name))

    @app.get("/v1/identities/{name}/templates")
    async def templates(name: str, _: dict = Depends(scope("read"))) -> dict[str, Any]:
        return {"templates": (await call(lambda: svc.show_identity(name)))["template_list"]}

    @app.delete("/v1/templates/{template_id}")
    async def delete_template(template_id: int, _: dict = Depends(scope("write"))) -> dict[str, Any]:
        return await call(lambda: svc.delete_template(template_id))

    @app.post("/v1/reindex")
    async def reindex(_: dict = Depends(scope("admin"))) -> dict[str, Any]:
        return await call(svc.reindex)

    return BodyLimit(app, settings.api_max_body_bytes)  # type: ignore[return-value]


def app_factory() -> ASGIApp:
    """uvicorn's entry point (``--factory``): settings from IDSVC_* variables, set by ``idsvc serve``."""
    return create_app()


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Run the API under uvicorn. Worker processes rebuild their settings from ``IDSVC_*``, so the resolved ones
    are handed down through the environment."""
    import os

    import uvicorn

    os.environ["IDSVC_HOME"] = str(settings.home)
    if "model" in settings.model_fields_set:
        os.environ["IDSVC_MODEL"] = str(settings.model)
    if settings.db:
        os.environ["IDSVC_DB"] = settings.db
    os.environ["IDSVC_DEVICE"] = settings.device
    uvicorn.run("idsvc.api:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level="info", access_log=True)
