"""Identities: enroll uploads, list, show, rename, delete, and their templates."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from idsvc.api.deps import call, image, scope
from idsvc.errors import IdsvcError

router = APIRouter(prefix="/v1", tags=["identities"])


@router.post("/identities/{name}/enroll")
async def enroll(request: Request, name: str, files: list[UploadFile] = File(...), aligned: bool = Form(False),
                 _: dict = Depends(scope("write"))) -> dict[str, Any]:
    imgs = [await image(f) for f in files]
    return await call(request, lambda s: s.enroll_bytes(name, imgs, aligned=aligned))


@router.get("/identities")
async def identities(request: Request, _: dict = Depends(scope("read"))) -> dict[str, Any]:
    return {"identities": await call(request, lambda s: s.list_identities())}


@router.get("/identities/{name}")
async def identity(request: Request, name: str, _: dict = Depends(scope("read"))) -> dict[str, Any]:
    return await call(request, lambda s: s.show_identity(name))


@router.patch("/identities/{name}")
async def rename(request: Request, name: str, body: dict[str, str],
                 _: dict = Depends(scope("write"))) -> dict[str, Any]:
    if "name" not in body:
        raise IdsvcError("invalid_argument", "body must be {\"name\": NEW_NAME}")
    return await call(request, lambda s: s.rename_identity(name, body["name"]))


@router.delete("/identities/{name}")
async def delete(request: Request, name: str, _: dict = Depends(scope("write"))) -> dict[str, Any]:
    return await call(request, lambda s: s.delete_identity(name))


@router.get("/identities/{name}/templates")
async def templates(request: Request, name: str, _: dict = Depends(scope("read"))) -> dict[str, Any]:
    return {"templates": (await call(request, lambda s: s.show_identity(name)))["template_list"]}


@router.delete("/templates/{template_id}")
async def delete_template(request: Request, template_id: int, _: dict = Depends(scope("write"))) -> dict[str, Any]:
    return await call(request, lambda s: s.delete_template(template_id))
