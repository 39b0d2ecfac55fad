"""Every error in one envelope: ``application/problem+json`` with the stable ``code``. Library errors keep their
code and take their status from the one table; validation errors and Starlette's own refusals (unknown route, wrong
method, malformed multipart) become ``invalid_argument``; anything unexpected is ``internal`` with no internals."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from idsvc.errors import IdsvcError

log = logging.getLogger(__name__)


def problem(exc: IdsvcError, status: int | None = None) -> JSONResponse:
    status = status or exc.http_status
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(status_code=status, headers=headers, media_type="application/problem+json", content={
        "type": f"https://idsvc.dev/errors/{exc.code}", "title": exc.code.replace("_", " "), "status": status,
        "code": exc.code, "detail": exc.message, "details": exc.to_dict()["details"]})


async def _idsvc_error(_: Request, exc: Exception) -> JSONResponse:
    return problem(exc) if isinstance(exc, IdsvcError) else await _unexpected(_, exc)


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    raw = exc.errors() if isinstance(exc, RequestValidationError) else []
    errors = [{"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
              for e in raw]  # never the input itself: it may be an upload's bytes
    first = errors[0] if errors else {"field": "?", "problem": "invalid request"}
    return problem(IdsvcError("invalid_argument", f"{first['field']}: {first['problem']}", errors=errors))


async def _http(_: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 400
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else str(exc)
    return problem(IdsvcError("invalid_argument", str(detail)), status)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("internal error: %s", exc.__class__.__name__, exc_info=exc)
    return problem(IdsvcError("internal", f"internal error: {exc.__class__.__name__}"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(IdsvcError, _idsvc_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
