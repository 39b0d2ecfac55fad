"""1:N search and 1:1 verify of uploaded photos."""

from __future__ import annotations

from fastapi import APIRouter, Request

from idsvc.api import gather, metrics
from idsvc.api.deps import call, gathered, gathers, image, uses_models
from idsvc.api.params import Aligned, AllFaces, IdentityName, Photo, Reader, Threshold, TopK
from idsvc.api.problems import AUTHED, COMMON, UPLOADS, responses
from idsvc.results import SearchResult, VerifyIdentityResult, VerifyResult

router = APIRouter(prefix="/v1", tags=["faces"])


@router.post("/search", response_model=SearchResult, responses=responses(*COMMON, *AUTHED, *UPLOADS, 409))
@gathers
async def search(request: Request, file: Photo, _: Reader, top_k: TopK = 5, all_faces: AllFaces = False,
                 threshold: Threshold = None, aligned: Aligned = False) -> SearchResult:
    """Who is this? The enrolled identities closest to the photo's main face (or to every face)."""
    img = await image(file)
    [item] = await gathered(request, gather.search, (top_k, all_faces, threshold, aligned), [img])
    result = item.result()
    metrics.searched(result)
    return result


@router.post("/verify", response_model=VerifyResult, responses=responses(*COMMON, *AUTHED, *UPLOADS, 409))
@gathers
async def verify(request: Request, a: Photo, b: Photo, _: Reader, threshold: Threshold = None,
                 aligned: Aligned = False) -> VerifyResult:
    """Are the main faces of two photos the same person?"""
    ia, ib = await image(a), await image(b)
    [item] = await gathered(request, gather.verify, (threshold, aligned), [(ia, ib)])
    return item.result()


@router.post("/identities/{name}/verify", response_model=VerifyIdentityResult,
             responses=responses(*COMMON, *AUTHED, *UPLOADS, 404, 409))
@uses_models
async def verify_identity(request: Request, name: IdentityName, file: Photo, _: Reader, threshold: Threshold = None,
                          aligned: Aligned = False) -> VerifyIdentityResult:
    """Is this photo's main face the enrolled identity ``name``?"""
    img = await image(file)
    return await call(request, lambda s: s.verify_identity(img, name, threshold=threshold, aligned=aligned))
