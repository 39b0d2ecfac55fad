"""Identities: enroll uploads, list, show, rename, delete, and their templates."""

from __future__ import annotations

from fastapi import APIRouter, Request

from idsvc.api import metrics
from idsvc.api.deps import call, image, uses_models
from idsvc.api.params import Aligned, IdentityName, Photos, Reader, TemplateId, Writer
from idsvc.api.problems import AUTHED, COMMON, WRITES, responses
from idsvc.api.schemas import RenameRequest
from idsvc.results import (
    DeletedIdentity,
    DeletedTemplate,
    EnrollResult,
    Identity,
    IdentityDetail,
    IdentityList,
    TemplateList,
)

router = APIRouter(prefix="/v1", tags=["identities"])


@router.post("/identities/{name}/enroll", response_model=EnrollResult,
             responses=responses(*COMMON, *AUTHED, *WRITES, 409, 413))
@uses_models
async def enroll(request: Request, name: IdentityName, files: Photos, _: Writer,
                 aligned: Aligned = False) -> EnrollResult:
    """Enroll photos into ``name`` (created if new). Each photo is accepted, rejected with its code (no face, two
    faces, low quality, not an image, enrolled elsewhere) or skipped (already enrolled here)."""
    imgs = [await image(f) for f in files]
    result = await call(request, lambda s: s.enroll(name, imgs, aligned=aligned, atomic=True),
                        model=False)
    metrics.enrolled(result)
    return result


@router.get("/identities", response_model=IdentityList, responses=responses(*COMMON, *AUTHED))
async def identities(request: Request, _: Reader) -> IdentityList:
    """Every identity with its template count."""
    return await call(request, lambda s: s.list_identities(), model=False)


@router.get("/identities/{name}", response_model=IdentityDetail, responses=responses(*COMMON, *AUTHED, 404))
async def identity(request: Request, name: IdentityName, key: Reader) -> IdentityDetail:
    """One identity and its templates (server paths for admin keys only)."""
    return await call(request, lambda s: s.show_identity(name, server_paths=key.scope == "admin"), model=False)


@router.patch("/identities/{name}", response_model=Identity,
              responses=responses(*COMMON, *AUTHED, *WRITES, 404, 409))
async def rename(request: Request, name: IdentityName, body: RenameRequest, _: Writer) -> Identity:
    """Rename an identity (its templates and vectors stay)."""
    return await call(request, lambda s: s.rename_identity(name, body.name), model=False)


@router.delete("/identities/{name}", response_model=DeletedIdentity,
               responses=responses(*COMMON, *AUTHED, *WRITES, 404))
async def delete(request: Request, name: IdentityName, _: Writer) -> DeletedIdentity:
    """Delete an identity, its templates, crops and vectors."""
    return await call(request, lambda s: s.delete_identity(name), model=False)


@router.get("/identities/{name}/templates", response_model=TemplateList, responses=responses(*COMMON, *AUTHED, 404))
async def templates(request: Request, name: IdentityName, key: Reader) -> TemplateList:
    """An identity's templates (server paths for admin keys only)."""
    paths = key.scope == "admin"
    detail = await call(request, lambda s: s.show_identity(name, server_paths=paths), model=False)
    return TemplateList(templates=detail.template_list)


@router.delete("/templates/{template_id}", response_model=DeletedTemplate,
               responses=responses(*COMMON, *AUTHED, *WRITES, 404))
async def delete_template(request: Request, template_id: TemplateId, _: Writer) -> DeletedTemplate:
    """Delete one template, its crop and its vector."""
    return await call(request, lambda s: s.delete_template(template_id), model=False)
