"""Per-app state and the dependencies every route shares: key check with scope and rate limit, the model lock and
the time limit. Within a worker process requests are serialised (the models are not shared across threads); run
``--workers N`` for parallel reads. Writes from any process are serialised by the home's write lock, and each request
sees index changes made elsewhere (the manifest is re-checked on every search)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Depends, Request, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from idsvc import cancel
from idsvc.api.limits import RateLimiter
from idsvc.cancel import Cancellation, checkpoint
from idsvc.jobs.keys import require_scope
from idsvc.results import Caller
from idsvc.service import Service
from idsvc.settings import Settings

T = TypeVar("T")


@dataclass
class ApiState:
    settings: Settings
    service: Service
    limiter: RateLimiter
    model_lock: threading.Lock = field(default_factory=threading.Lock)


def state(request: Request) -> ApiState:
    st: ApiState = request.app.state.idsvc
    return st


#: The spec's security scheme (Swagger UI's Authorize button); a missing key is our own 401 problem, not FastAPI's.
bearer = HTTPBearer(scheme_name="apiKey", bearerFormat="idsvc API key",
                    description="An API key from `idsvc keys create NAME --scope read|write|admin`.",
                    auto_error=False)


def scope(needed: str) -> Callable[..., Caller]:
    """A dependency: the caller's key, which must exist, be unrevoked, have ``needed`` scope and be under its rate.
    ``KeyGate`` has already looked the key up for every /v1 route; ``creds`` declares the scheme in the spec."""

    def dep(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Caller:
        st = state(request)
        key = getattr(request.state, "api_key", None) or st.service.authenticate(
            creds.credentials if creds else None, needed)
        require_scope(key, needed)
        st.limiter.check(key.name)
        return key

    return dep


async def call(request: Request, fn: Callable[[Service], T]) -> T:
    """Run ``fn(service)`` in a worker thread under the model lock, within the request time limit (``timeout``).

    Past the limit the work is cancelled and waited for (see ``idsvc.cancel``): a 504 means nothing was committed, and
    the thread has let go of the model lock before the 504 is sent, so the next request is not stuck behind it."""
    st = state(request)
    limit = st.settings.api_request_timeout_s
    token = Cancellation(limit)

    def locked() -> T:
        with st.model_lock:
            checkpoint()  # cancelled while queued behind another request: do not start
            return fn(st.service)

    cancel.current.set(token)  # copied into the worker thread's context by to_thread
    work = asyncio.ensure_future(asyncio.to_thread(locked))
    try:
        return await asyncio.wait_for(asyncio.shield(work), limit)
    except TimeoutError:
        token.cancel()
        return await work  # stops at its next checkpoint (504, nothing stored) or finishes a begun commit


async def image(upload: UploadFile) -> tuple[bytes, str]:
    return await upload.read(), upload.filename or "upload"

