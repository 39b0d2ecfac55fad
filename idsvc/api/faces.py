"""1:N search and 1:1 verify of uploaded photos."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from idsvc.api.deps import call, image, scope

router = APIRouter(prefix="/v1", tags=["faces"])


@router.post("/search")
async def search(request: Request, file: UploadFile = File(...), top_k: int = Form(5),
                 all_faces: bool = Form(False), threshold: float | None = Form(None), aligned: bool = Form(False),
                 _: dict = Depends(scope("read"))) -> dict[str, Any]:
    img = await image(file)
    return await call(request, lambda s: s.search(img, top_k=top_k, all_faces=all_faces, threshold=threshold,
                                                  aligned=aligned))


@router.post("/verify")
async def verify(request: Request, a: UploadFile = File(...), b: UploadFile = File(...),
                 threshold: float | None = Form(None), aligned: bool = Form(False),
                 _: dict = Depends(scope("read"))) -> dict[str, Any]:
    ia, ib = await image(a), await image(b)
    return await call(request, lambda s: s.verify(ia, ib, threshold=threshold, aligned=aligned))


@router.post("/identities/{name}/verify")
async def verify_identity(request: Request, name: str, file: UploadFile = File(...),
                          threshold: float | None = Form(None), aligned: bool = Form(False),
                          _: dict = Depends(scope("read"))) -> dict[str, Any]:
    img = await image(file)
    return await call(request, lambda s: s.verify_identity(img, name, threshold=threshold, aligned=aligned))
