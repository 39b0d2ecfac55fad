"""Health, readiness, status, reindex and the Prometheus scrape."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from idsvc.api import metrics
from idsvc.api.deps import call, state, uses_models
from idsvc.api.params import Admin, Reader
from idsvc.api.problems import AUTHED, COMMON, WRITES, responses
from idsvc.api.schemas import Health
from idsvc.errors import IdsvcError
from idsvc.results import Ready, Reindexed, Status

router = APIRouter(prefix="/v1", tags=["admin"])
scrape = APIRouter(tags=["admin"])


@router.get("/health", response_model=Health, responses=responses(*COMMON))
async def health() -> Health:
    """Liveness: the process answers. Needs no key."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready, responses=responses(*COMMON, 503))
async def ready(request: Request) -> Ready:
    """Readiness: the model is loaded, the database answers and the index agrees with the registry; else 503
    ``not_ready`` with each check's verdict in ``details.checks``. Needs no key; takes no model lock, so a long
    enroll does not make the server look dead."""
    result = await asyncio.to_thread(state(request).service.readiness)
    if not result.ready:
        failing = "; ".join(f"{k}: {v}" for k, v in result.checks.items() if v != "ok")
        raise IdsvcError("not_ready", f"not ready ({failing})", checks=result.checks)
    return result


@router.get("/status", response_model=Status, responses=responses(*COMMON, *AUTHED))
async def status(request: Request, key: Reader) -> Status:
    """Counts, the active model, the threshold and whether the index agrees with the registry (server paths and
    the database URL for admin keys only)."""
    return await call(request, lambda s: s.status(server_paths=key.scope == "admin"), model=False)


@router.post("/reindex", response_model=Reindexed, responses=responses(*COMMON, *AUTHED, *WRITES))
@uses_models
async def reindex(request: Request, _: Admin) -> Reindexed:
    """Rebuild the index from the registry (``busy`` while another writer runs). Needs an admin key."""
    return await call(request, lambda s: s.reindex())


@scrape.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
    **responses(*COMMON)})
async def prometheus(request: Request) -> Response:
    """Prometheus metrics (text format). Needs no key: expose it only where your scraper can reach it."""
    body, content_type = await asyncio.to_thread(metrics.exposition, state(request).service)
    return Response(body, media_type=content_type)
