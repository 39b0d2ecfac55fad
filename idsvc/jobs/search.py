"""1:N search: who is this? Each face's embedding goes to the index; template hits become identities ranked by their
best template's score.

One entry for one photo or many, paths and uploads alike: the photos are checked before any model loads, then
searched in chunks — a chunk's photos detected together (same-shape photos share MTCNN passes) and embedded in one
encoder pass, so a folder is searched at about enroll's rate — and each answer (or that photo's error) comes out as
its chunk finishes. ``all_faces`` searches every face of each photo, one photo at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from idsvc.errors import IdsvcError
from idsvc.faces.images import ImageInput, LoadedImage, gather, source_name
from idsvc.home import Home
from idsvc.jobs.thresholds import search_threshold
from idsvc.results import Candidate, Each, ItemError, SearchAnswer, SearchFace, SearchGallery, SearchItem, SearchResult

if TYPE_CHECKING:
    from idsvc.faces.reader import FaceCrop
    from idsvc.storage.vectors import OpenIndex

#: Photos detected together and embedded in one encoder pass.
CHUNK = 16


def search(home: Home, images: Sequence[ImageInput], *, top_k: int = 5, threshold: float | None = None,
           all_faces: bool = False, aligned: bool = False) -> Each[SearchAnswer]:
    """Identities ranked by score (the best over each identity's templates), per photo: its main face, or with
    ``all_faces`` every face. ``aligned``: the photos are aligned face crops. Raises ``invalid_argument`` and
    ``file_not_found`` at once; a photo's own failure (not an image, no face) is its item's error."""
    if top_k < 1:
        raise IdsvcError("invalid_argument", f"top_k must be at least 1, not {top_k}")
    photos = gather(images)
    return Each(len(photos), _answers(home, photos, top_k, threshold, all_faces, aligned))


def _answers(home: Home, photos: list[ImageInput], top_k: int, threshold: float | None, all_faces: bool,
             aligned: bool) -> Iterator[SearchAnswer]:
    opened = home.index.open()
    sized = search_threshold(home, threshold, *home.owners.counts(opened.generation))
    thr = sized.value
    for start in range(0, len(photos), 1 if all_faces else CHUNK):
        chunk = photos[start:start + (1 if all_faces else CHUNK)]
        read: list[LoadedImage | IdsvcError] = []
        for image in chunk:
            try:
                read.append(home.model.pipeline.read(image))
            except IdsvcError as exc:
                read.append(exc)
        found = _crops(home, read, all_faces, aligned)
        good = [c for c in found if isinstance(c, list)]
        vecs = iter(home.model.pipeline.embed([fc.aligned for crops in good for fc in crops]))
        opened = home.index.open()
        for image, img, crops in zip(chunk, read, found):
            if isinstance(crops, list) and isinstance(img, LoadedImage):
                faces = [_face(home, opened, fc, next(vecs), top_k, thr) for fc in crops]
                yield SearchItem.of(source_name(image), SearchResult(
                    image=img.source, model_version=home.model.version, threshold=thr, threshold_source=sized.source,
                    target_fpir=sized.target_fpir,
                    gallery=SearchGallery(identities=sized.identities, templates=sized.templates),
                    identity=faces[0].identity, score=faces[0].score,
                    faces_detected=len(crops) if all_faces else crops[0].faces_in_image, faces=faces))
            else:
                err = crops if isinstance(crops, IdsvcError) else IdsvcError(
                    "internal", f"internal error ({crops.__class__.__name__})")
                yield SearchItem.failure(source_name(image), ItemError.of(err))


def _crops(home: Home, read: list[LoadedImage | IdsvcError], all_faces: bool,
           aligned: bool) -> list[list[FaceCrop] | Exception]:
    """Per photo: the faces to search (the main one, or all), or why there are none."""
    pipeline = home.model.pipeline
    ok = [r for r in read if isinstance(r, LoadedImage)]
    if all_faces and not aligned:
        per: list[list[FaceCrop] | Exception] = []
        for img in ok:
            faces = pipeline.faces(img)
            per.append(faces or IdsvcError("no_face", f"{img.source}: no face found", path=img.source))
    else:
        per = [c if isinstance(c, Exception) else [c]
               for c in pipeline.one_faces(ok, strict=False, given_aligned=aligned)]
    found = iter(per)
    return [r if isinstance(r, IdsvcError) else next(found) for r in read]


def _face(home: Home, opened: OpenIndex, fc: FaceCrop, vec: np.ndarray, top_k: int, thr: float) -> SearchFace:
    """One face's answer: its ranked identities, and the best of them when it is a match."""
    candidates = rank(home, opened, vec, top_k, thr)
    best = candidates[0] if candidates and candidates[0].match else None
    return SearchFace(box=[round(v, 1) for v in fc.face.box], det_prob=round(fc.face.prob, 4),
                      quality=fc.quality.report(), identity=best.name if best else None,
                      score=candidates[0].score if candidates else None, candidates=candidates)


def rank(home: Home, opened: OpenIndex, vec: np.ndarray, top_k: int, thr: float) -> list[Candidate]:
    """Top identities: fetch more templates than identities wanted, keep each identity's best, widen if needed.
    Template ids become identities through the in-memory map (``home.owners``), not a registry query. The index
    answers best first, so an identity's first template is its best, and the walk stops at ``top_k`` identities."""
    index = opened.index
    total = index.ntotal
    if total == 0:
        return []
    owners = home.owners.at(opened.generation)
    k = min(total, top_k * 8 + 32)
    while True:
        scores, ids = index.search(vec[None, :], k)
        best: dict[int, tuple[str, float, int]] = {}
        for s, i in zip(scores[0].tolist(), ids[0].tolist()):
            owner = owners.get(i)  # None for -1 (no more results) and for a template deleted since
            if owner is None or owner[0] in best:
                continue
            best[owner[0]] = (owner[1], round(s, 6), i)
            if len(best) == top_k:
                break
        if len(best) >= top_k or k >= total:
            break
        k = min(total, k * 4)
    ranked = sorted(best.values(), key=lambda c: -c[1])[:top_k]
    return [Candidate(name=name, score=score, template_id=tid, match=score >= thr) for name, score, tid in ranked]
