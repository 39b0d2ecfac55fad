"""The application factory and ``serve``. Image bytes are never logged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from idsvc.api import admin, faces, identities, problems
from idsvc.api.deps import ApiState
from idsvc.api.limits import BodyLimit, RateLimiter
from idsvc.service import Service
from idsvc.settings import Settings, load_settings


def create_app(settings: Settings | None = None, service: Service | None = None) -> ASGIApp:
    """The ASGI app: FastAPI with the three routers and the problem handlers, behind the body-size limit."""
    settings = settings or load_settings()
    svc = service or Service(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(svc.warm_up)  # load models before the first request, not during it
        yield

    app = FastAPI(title="idsvc", version="1", description="Face identity service: enroll, search, verify.",
                  lifespan=lifespan)
    app.state.idsvc = ApiState(settings, svc, RateLimiter(settings.api_rate_per_minute))
    problems.install(app)
    for router in (faces.router, identities.router, admin.router):
        app.include_router(router)
    return BodyLimit(app, settings.api_max_body_bytes)


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
    uvicorn.run("idsvc.api:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level="info", access_log=True)
