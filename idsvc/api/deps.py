"""Per-app state and the dependencies every route shares: key check with scope and rate limit, the model lock and
the time limit, and the gathering of concurrent model requests.

Within a worker process, model work is serialised (``Home.busy``: the networks and the in-memory index are not
shared across threads); run ``--workers N`` for parallel reads. Searches, verifies, detects and embeds that arrive
together share one pass (``gathered``, see ``idsvc.api.gather``). Routes that need no model (listings, status,
renames, deletes) never take that lock; an enroll takes it only while it detects and embeds, and again briefly to
store, after it has the home's write lock — so no request holds the models while it waits for another writer. Writes
from any process are serialised by the write lock, and each request sees index changes made elsewhere (the manifest
is re-checked on every search). Routes marked ``uses_models`` are counted per worker from their arrival
(``idsvc.api.limits.Admission``): past ``IDSVC_API_QUEUE`` the next one is answered 503 ``overloaded`` at once.
A request's time limit counts from its arrival.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Depends, Request, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from idsvc import cancel
from idsvc.api.gather import Gatherer, Run
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
    gather: Gatherer


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


def uses_models(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a route that uses the models: ``Admission`` counts it against the worker's queue from its arrival."""
    endpoint.uses_models = "alone"  # type: ignore[attr-defined]
    return endpoint


def gathers(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a route that uses the models through ``gathered``: counted like ``uses_models``, and the gatherer waits a
    moment for such requests that have arrived but are still being read."""
    endpoint.uses_models = "gathered"  # type: ignore[attr-defined]
    return endpoint


def deadline(request: Request) -> float:
    """When the request's time runs out (``time.monotonic()``): its limit after its arrival."""
    st = state(request)
    arrived = request.scope.get("state", {}).get("arrived") or time.monotonic()
    return float(arrived) + st.settings.api_request_timeout_s


async def gathered(request: Request, run: Run, params: Hashable, inputs: list[Any]) -> list[Any]:
    """``run(service, inputs, params)``'s outputs for this request's ``inputs``, computed in one pass with other
    requests of the same kind and ``params`` waiting in this worker."""
    return await state(request).gather.ask(run, params, inputs, deadline(request))


async def call(request: Request, fn: Callable[[Service], T], *, model: bool = True) -> T:
    """Run ``fn(service)`` in a worker thread within the request's time limit (``timeout``), counted from arrival.
    ``model``: hold the worker's model lock throughout (a verify against an identity); a write route passes False and
    its job takes the lock itself, only around its model work.

    Past the limit the work is cancelled and waited for (see ``idsvc.cancel``): a 504 means nothing was committed, and
    the thread has let go of the model lock before the 504 is sent, so the next request is not stuck behind it."""
    st = state(request)
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
    work = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        return await asyncio.wait_for(asyncio.shield(work), max(0.0, deadline(request) - time.monotonic()))
    except TimeoutError:
        token.cancel()
        return await work  # stops at its next checkpoint (504, nothing stored) or finishes a begun commit


async def image(upload: UploadFile) -> tuple[bytes, str]:
    return await upload.read(), upload.filename or "upload"

