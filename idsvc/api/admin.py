"""Health, status and reindex."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from idsvc.api.deps import call, scope

router = APIRouter(prefix="/v1", tags=["admin"])


@router.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/status")
async def status(request: Request, _: dict = Depends(scope("read"))) -> dict[str, Any]:
    return await call(request, lambda s: s.status())


@router.post("/reindex")
async def reindex(request: Request, _: dict = Depends(scope("admin"))) -> dict[str, Any]:
    return await call(request, lambda s: s.reindex())
