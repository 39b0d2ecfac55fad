"""The CLI's batch commands over HTTP: many photos in one request, one result per photo, a bad photo reported in
its item while the rest go on. Detect, embed, bulk enroll (a person folder per photo) and batch search."""

from __future__ import annotations

from fastapi import APIRouter, Request

from idsvc.api import gather, metrics
from idsvc.api.deps import call, gathered, gathers, image, uses_models
from idsvc.api.params import Aligned, AllFaces, Photos, Reader, Threshold, TopK, Writer
from idsvc.api.problems import AUTHED, COMMON, WRITES, responses
from idsvc.results import BatchSearchResult, BatchSummary, BulkEnrollResult, DetectResult, EmbedResult

router = APIRouter(prefix="/v1", tags=["batch"])


@router.post("/detect", response_model=DetectResult, responses=responses(*COMMON, *AUTHED, 413))
@gathers
async def detect(request: Request, files: Photos, _: Reader) -> DetectResult:
    """Every face of each photo: box, five landmarks, detection probability, quality and the quality gate's
    reasons (no encoder runs)."""
    imgs = [await image(f) for f in files]
    photos = await gathered(request, gather.detect, None, imgs)
    return DetectResult(photos=photos, faces=sum(len(p.faces or []) for p in photos),
                        errors=sum(1 for p in photos if p.failed is not None))


@router.post("/embed", response_model=EmbedResult, responses=responses(*COMMON, *AUTHED, 413))
@gathers
async def embed(request: Request, files: Photos, _: Reader, aligned: Aligned = False) -> EmbedResult:
    """The embedding of each photo's main face, exactly as search computes it, with its model version."""
    imgs = [await image(f) for f in files]
    return EmbedResult(embeddings=await gathered(request, gather.embed, aligned, imgs))


@router.post("/enroll", response_model=BulkEnrollResult, responses=responses(*COMMON, *AUTHED, *WRITES, 409, 413))
@uses_models
async def enroll_each(request: Request, files: Photos, _: Writer, aligned: Aligned = False) -> BulkEnrollResult:
    """Enroll many identities at once (``idsvc enroll --each``): name each file ``PERSON/PHOTO.jpg`` (a browser
    uploading a folder of people folders does). A file without a valid person folder is rejected in ``unnamed``."""
    imgs = [await image(f) for f in files]
    result = await call(request, lambda s: s.enroll_each(imgs, aligned=aligned, atomic=True),
                        model=False)
    for each in result.identities:
        metrics.enrolled(each)
    return result


@router.post("/search/batch", response_model=BatchSearchResult,
             responses=responses(*COMMON, *AUTHED, 409, 413))
@gathers
async def search_many(request: Request, files: Photos, _: Reader, top_k: TopK = 5, all_faces: AllFaces = False,
                      threshold: Threshold = None, aligned: Aligned = False) -> BatchSearchResult:
    """Search each photo (``idsvc search`` with many photos): one result or error per photo, in order, and a
    summary whose ``exit_code`` is what the CLI would exit with."""
    imgs = [await image(f) for f in files]
    results = await gathered(request, gather.search, (top_k, all_faces, threshold, aligned), imgs)
    for r in results:
        metrics.searched(r)
    return BatchSearchResult(results=results, summary=BatchSummary.of(results))
