"""Every error in one envelope: ``application/problem+json`` with the stable ``code`` and the request's id. Library
errors keep their code and take their status from the one table; a request that does not match its schema (and a
malformed multipart body) is ``invalid_argument``; an unknown route ``route_not_found``; a wrong method
``method_not_allowed`` (with ``Allow``); anything unexpected is ``internal`` with no internals. No problem ever
carries the request's input: it may be an upload's bytes.

``responses`` documents the same envelope in the OpenAPI file, one entry per status a route can return, listing the
codes the table maps to that status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import Scope

from idsvc.api.schemas import Problem
from idsvc.errors import CODES, IdsvcError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
_STARLETTE_CODES = {404: "route_not_found", 405: "method_not_allowed", 413: "too_large"}
#: Seconds a client should wait before it tries again, for the failures that pass by themselves (the server keeps
#: reconnecting to its database; a writer lets go of the lock).
RETRY_AFTER_S = {"database_unavailable": 5, "busy": 2, "not_ready": 5, "schema_outdated": 30, "overloaded": 1}


def request_id(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id", "-"))


def problem(exc: IdsvcError, scope: Scope, status: int | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    status = status or exc.http_status
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.code == "rate_limited":
        headers["Retry-After"] = str(exc.details.get("retry_after", 1))
    elif exc.code in RETRY_AFTER_S:
        headers["Retry-After"] = str(RETRY_AFTER_S[exc.code])
    body = Problem(type=f"https://idsvc.dev/errors/{exc.code}", title=exc.code.replace("_", " "), status=status,
                   code=exc.code, detail=exc.message, details=exc.to_dict()["details"], request_id=request_id(scope))
    return JSONResponse(status_code=status, headers=headers, media_type=PROBLEM_JSON, content=body.model_dump())


async def _idsvc_error(request: Request, exc: Exception) -> JSONResponse:
    return problem(exc, request.scope) if isinstance(exc, IdsvcError) else await _unexpected(request, exc)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    raw = exc.errors() if isinstance(exc, RequestValidationError) else []
    errors = [{"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
              for e in raw]  # never e["input"]: it may be an upload's bytes
    first = errors[0] if errors else {"field": "?", "problem": "invalid request"}
    return problem(IdsvcError("invalid_argument", f"{first['field']}: {first['problem']}", errors=errors),
                   request.scope)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc.__cause__, IdsvcError):  # e.g. the body limit tripping while FastAPI parses a form
        return problem(exc.__cause__, request.scope)
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 400
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else str(exc)
    headers = getattr(exc, "headers", None)
    code = _STARLETTE_CODES.get(status, "invalid_argument")
    if code == "route_not_found":
        detail = f"no route {request.method} {request.url.path}"
    elif code == "method_not_allowed":  # Starlette names only the first route of the path; list them all
        allowed = _allowed_methods(request)
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        detail = f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
    return problem(IdsvcError(code, str(detail)), request.scope, status, headers)


def _allowed_methods(request: Request) -> list[str]:
    """The documented methods of every route whose path matches (FastAPI keeps included routers nested, so the
    OpenAPI document is the flat list)."""
    path = request.url.path
    methods = {m.upper() for template, ops in request.app.openapi()["paths"].items()
               if compile_path(template)[0].match(path) for m in ops}
    return sorted(methods)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return problem(unexpected_error(exc, request_id(request.scope)), request.scope)


def unexpected_error(exc: Exception, rid: str) -> IdsvcError:
    """What an exception no handler expected is answered as: its library code when it is one, else ``internal`` (a
    bug: logged with its traceback, answered without internals)."""
    if isinstance(exc, IdsvcError):
        return exc
    log.error("internal error (request %s): %s", rid, exc.__class__.__name__, exc_info=exc)
    return IdsvcError("internal", f"internal error: {exc.__class__.__name__}")


def install(app: FastAPI) -> None:
    app.add_exception_handler(IdsvcError, _idsvc_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)


#: What every route can answer whatever it does: a malformed request, the server's own trouble.
COMMON = (400, 500)
#: ... and every route behind a key.
AUTHED = (401, 403, 429, 503, 504)
#: ... and every route that takes uploads.
UPLOADS = (413, 422)
#: ... and every route that writes to the home or its registry (a full disk: ``disk_full``).
WRITES = (507,)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for ``statuses``: the problem schema, described by the codes with that status."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        codes = [code for code, m in CODES.items() if m.http_status == status]
        out[status] = {"model": Problem,  # documented as application/problem+json by contract.py
                       "description": "Problem: " + ", ".join(f"`{c}`" for c in codes)}
    return out
