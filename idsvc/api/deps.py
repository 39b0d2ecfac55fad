"""Per-app state and the dependencies every route shares: key check with scope and rate limit, the worker's queue,
the model lock and the time limit.

Within a worker process, model work is serialised (``Home.busy``: the networks and the in-memory index are not
shared across threads); run ``--workers N`` for parallel reads. Routes that need no model (listings, status,
renames, deletes) never take that lock; an enroll takes it only while it detects and embeds, and again briefly to
store, after it has the home's write lock — so no request holds the models while it waits for another writer. Writes
from any process are serialised by the write lock, and each request sees index changes made elsewhere (the manifest
is re-checked on every search). Requests that use the models are counted per worker: past ``IDSVC_API_QUEUE`` the
next one is answered 503 ``overloaded`` with ``Retry-After`` at once, instead of waiting towards a 504."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Depends, Request, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from idsvc import cancel
from idsvc.api.limits import RateLimiter
from idsvc.cancel import Cancellation, checkpoint
from idsvc.errors import IdsvcError
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
    queued: int = 0  # requests that use the models, waiting or running (changed only on the event loop's thread)


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


async def call(request: Request, fn: Callable[[Service], T], *, model: bool = True, queued: bool | None = None) -> T:
    """Run ``fn(service)`` in a worker thread within the request time limit (``timeout``), counted from arrival.
    ``model``: hold the worker's model lock throughout (searches, verifies, detects, embeds); a write route passes
    False and its job takes the lock itself, only around its model work. ``queued`` (default: ``model``): count the
    request against the worker's queue, refusing it with ``overloaded`` when the queue is full.

    Past the limit the work is cancelled and waited for (see ``idsvc.cancel``): a 504 means nothing was committed, and
    the thread has let go of the model lock before the 504 is sent, so the next request is not stuck behind it."""
    st = state(request)
    counted = model if queued is None else queued
    if counted and st.queued >= st.settings.api_queue:
        raise IdsvcError("overloaded", f"this worker has {st.queued} requests waiting or running (IDSVC_API_QUEUE="
                         f"{st.settings.api_queue}); try again shortly", retry_after=1)
    limit = st.settings.api_request_timeout_s
    token = Cancellation(limit)
    busy = st.service.home.busy

    def run() -> T:
        if not model:
            checkpoint()
            return fn(st.service)
        with busy:
            checkpoint()  # cancelled while queued behind another request: do not start
            return fn(st.service)

    cancel.current.set(token)  # copied into the worker thread's context by to_thread
    if counted:
        st.queued += 1
    try:
        work = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            return await asyncio.wait_for(asyncio.shield(work), limit)
        except TimeoutError:
            token.cancel()
            return await work  # stops at its next checkpoint (504, nothing stored) or finishes a begun commit
    finally:
        if counted:
            st.queued -= 1


async def image(upload: UploadFile) -> tuple[bytes, str]:
    return await upload.read(), upload.filename or "upload"

