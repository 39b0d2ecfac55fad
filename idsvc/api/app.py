"""The application factory and ``serve``. Image bytes are never logged.

Requests pass, outermost first: request ids, metrics, the key gate (no key, no body read), the worker's queue for the
models (full: no body read), the body-size limit, then FastAPI (problem handlers, routers).
``/docs`` and ``/redoc`` load Swagger UI and ReDoc from files installed with fastapi-offline, never from a CDN."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp

from idsvc import __version__
from idsvc.api import admin, batch, contract, faces, identities, problems
from idsvc.api.deps import ApiState
from idsvc.api.gather import Gatherer
from idsvc.api.limits import Admission, BodyLimit, KeyGate, RateLimiter
from idsvc.api.metrics import RequestMetrics
from idsvc.api.request_ids import RequestIds
from idsvc.service import Service
from idsvc.settings import Settings, load_settings


def create_app(settings: Settings | None = None, service: Service | None = None) -> ASGIApp:
    """The ASGI app: FastAPI with the routers and the problem handlers, behind request ids, metrics and the
    body-size limit."""
    settings = settings or load_settings()
    svc = service or Service(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(svc.warm_up)  # load models before the first request, not during it
        yield

    app = FastAPIOffline(title="idsvc", version=__version__, lifespan=lifespan, redirect_slashes=False,
                         generate_unique_id_function=lambda route: route.name,  # operationId = the function
                         description=DESCRIPTION, swagger_ui_parameters={"persistAuthorization": True})
    problems.install(app)
    routers = (faces.router, identities.router, batch.router, admin.router, admin.scrape)
    for router in routers:
        app.include_router(router)
    failures = RateLimiter(settings.home / "api-rate.sqlite3", settings.api_failed_auth_per_minute)
    if settings.console:
        from idsvc.api import console

        console.install(app, settings, failures)
    app.openapi = lambda: contract.openapi(app)  # type: ignore[method-assign]
    queue = Admission(BodyLimit(app, settings.api_max_body_bytes), settings.api_queue, model_routes(routers))
    gather = Gatherer(svc, max_batch=settings.api_batch, wait_s=settings.api_batch_wait_ms / 1000,
                      limit_s=settings.api_request_timeout_s, arrived=lambda: queue.gathering)
    app.state.idsvc = ApiState(settings, svc, RateLimiter(settings.home / "api-rate.sqlite3",
                                                          settings.api_rate_per_minute), gather)
    gate = KeyGate(queue, lambda secret: svc.authenticate(secret, "read"), failures)
    from idsvc.api.console import ConsoleHeaders

    return RequestIds(ConsoleHeaders(RequestMetrics(gate)))


def model_routes(routers: tuple[APIRouter, ...]) -> list[tuple[re.Pattern[str], bool]]:
    """The paths of the routes marked ``uses_models`` or ``gathers`` (``idsvc.api.deps``), which the worker's queue
    counts, each with whether it is gathered."""
    return [(r.path_regex, getattr(r.endpoint, "uses_models", None) == "gathered") for router in routers
            for r in router.routes
            if isinstance(r, APIRoute) and getattr(r.endpoint, "uses_models", None)]


DESCRIPTION = """Face identity service: enroll identities from photos, then search (1:N) and verify (1:1).

Send an API key (`idsvc keys create NAME --scope read|write|admin`) as `Authorization: Bearer KEY`; in this page,
use **Authorize**. Every error is `application/problem+json` with a stable `code` and the `request_id` that is also
in the `X-Request-ID` header: 400 the request does not match this schema, 422 it does but its content cannot be used
(not an image, no face)."""


def app_factory() -> ASGIApp:
    """uvicorn's entry point (``--factory``): settings from IDSVC_* variables, set by ``serve``."""
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
    os.environ["IDSVC_CONSOLE"] = "true" if settings.console else "false"
    with metrics_dir(workers):
        uvicorn.run("idsvc.api:app_factory", factory=True, host=host, port=port, workers=workers,
                    log_level="info", access_log=True, log_config=log_config())


def log_config() -> dict[str, object]:
    """uvicorn's logging, each access line naming the worker process that answered (``[PID]``): with ``--workers N``
    an operator can tell which worker served a request, and match it to that worker's error log."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    access = config["formatters"]["access"]
    access["fmt"] = "%(levelprefix)s [%(process)d] " + access["fmt"].removeprefix("%(levelprefix)s ")
    return config


@contextmanager
def metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, prometheus-client's multiprocess mode: each worker writes its counters under a fresh
    folder that every scrape sums (the variable is read when a worker imports prometheus-client)."""
    import os
    import shutil
    import tempfile

    if workers <= 1:
        yield
        return
    folder = tempfile.mkdtemp(prefix="idsvc-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)
