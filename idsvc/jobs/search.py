"""1:N search: who is this? Each face's embedding goes to the index; template hits become identities ranked by their
best template's score."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from idsvc.errors import IdsvcError, short_path
from idsvc.faces.images import ImageInput, LoadedImage, is_file
from idsvc.home import Home
from idsvc.jobs.thresholds import resolve_threshold

if TYPE_CHECKING:
    from idsvc.faces.reader import FaceCrop
    from idsvc.storage.vectors import OpenIndex


def require_files(*images: ImageInput) -> None:
    """Refuse a missing file before any model loads (a typo should not cost the model's load time).
    Raises ``file_not_found``."""
    for image in images:
        if not isinstance(image, tuple) and not is_file(Path(image)):
            raise IdsvcError("file_not_found", f"{short_path(image)}: no such file", path=str(image))


def load(home: Home, image: ImageInput) -> LoadedImage:
    require_files(image)
    return home.model.pipeline.read(image)


def search(home: Home, image: ImageInput, *, top_k: int = 5, threshold: float | None = None,
           all_faces: bool = False, aligned: bool = False) -> dict[str, Any]:
    """Identities ranked by score (the best over each identity's templates), per face. ``aligned``: the photo is an
    aligned face crop. Raises ``invalid_argument``, the image codes and ``no_face``."""
    if top_k < 1:
        raise IdsvcError("invalid_argument", f"top_k must be at least 1, not {top_k}")
    require_files(image)
    thr, source = resolve_threshold(home, threshold)
    img = load(home, image)
    pipeline = home.model.pipeline
    if aligned:
        crops = [pipeline.one_face(img, strict=False, given_aligned=True)]
    else:
        crops = pipeline.faces(img) if all_faces else [pipeline.one_face(img, strict=False)]
    if not crops:
        raise IdsvcError("no_face", f"{img.source}: no face found", path=img.source)
    return _answer(home, home.index.open(), img, crops, pipeline.embed([c.aligned for c in crops]), top_k, thr,
                   source, all_faces)


def search_many(home: Home, images: Sequence[ImageInput], *, top_k: int = 5, threshold: float | None = None,
                aligned: bool = False, chunk: int = 16) -> Iterator[dict[str, Any]]:
    """``search`` (main face) for many photos, each answer — or ``{"error": {code, message}}`` — in order, as each
    chunk finishes: the photos of a chunk are detected together (same-shape photos share MTCNN passes) and embedded
    in one encoder pass, so a folder is searched at about enroll's rate. The answers are ``search``'s."""
    if top_k < 1:
        raise IdsvcError("invalid_argument", f"top_k must be at least 1, not {top_k}")
    thr, source = resolve_threshold(home, threshold)
    pipeline = home.model.pipeline
    for start in range(0, len(images), chunk):
        read: list[LoadedImage | IdsvcError] = []
        for image in images[start:start + chunk]:
            try:
                read.append(load(home, image))
            except IdsvcError as exc:
                read.append(exc)
        ok = [r for r in read if isinstance(r, LoadedImage)]
        found = iter(pipeline.one_faces(ok, strict=False, given_aligned=aligned))
        crops: list[FaceCrop | Exception] = [r if isinstance(r, IdsvcError) else next(found) for r in read]
        good = [c for c in crops if not isinstance(c, Exception)]
        vecs = iter(pipeline.embed([c.aligned for c in good]))
        opened = home.index.open()
        for r, c in zip(read, crops):
            if isinstance(c, Exception) or not isinstance(r, LoadedImage):
                err = c if isinstance(c, IdsvcError) else IdsvcError("internal", f"internal error "
                                                                                 f"({c.__class__.__name__})")
                yield {"error": {"code": err.code, "message": err.message}}
            else:
                yield _answer(home, opened, r, [c], np.stack([next(vecs)]), top_k, thr, source, False)


def _answer(home: Home, opened: OpenIndex, img: LoadedImage, crops: list[FaceCrop], vecs: np.ndarray, top_k: int,
            thr: float, source: str, all_faces: bool) -> dict[str, Any]:
    """One photo's answer: per face, its ranked identities and whether the best is a match."""
    detected = len(crops) if all_faces else crops[0].faces_in_image
    faces = []
    for fc, vec in zip(crops, vecs):
        candidates = rank(home, opened, vec, top_k)
        for c in candidates:
            c["match"] = c["score"] >= thr
        best = candidates[0] if candidates and candidates[0]["match"] else None
        faces.append({"box": [round(v, 1) for v in fc.face.box], "det_prob": round(fc.face.prob, 4),
                      "quality": fc.quality.as_dict(), "identity": best["name"] if best else None,
                      "score": candidates[0]["score"] if candidates else None, "candidates": candidates})
    return {"image": img.source, "model_version": home.model.version, "threshold": thr, "threshold_source": source,
            "identity": faces[0]["identity"], "score": faces[0]["score"], "faces_detected": detected, "faces": faces}


def rank(home: Home, opened: OpenIndex, vec: np.ndarray, top_k: int) -> list[dict[str, Any]]:
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
        best: dict[int, dict[str, Any]] = {}
        for s, i in zip(scores[0].tolist(), ids[0].tolist()):
            owner = owners.get(i)  # None for -1 (no more results) and for a template deleted since
            if owner is None or owner[0] in best:
                continue
            best[owner[0]] = {"name": owner[1], "score": round(s, 6), "template_id": i}
            if len(best) == top_k:
                break
        if len(best) >= top_k or k >= total:
            break
        k = min(total, k * 4)
    return sorted(best.values(), key=lambda c: -c["score"])[:top_k]
