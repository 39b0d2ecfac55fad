"""1:1 verification: are two faces the same person, or is this face the enrolled person ``name``?"""

from __future__ import annotations

from typing import Any

from idsvc.errors import IdsvcError
from idsvc.faces.images import ImageInput
from idsvc.home import Home
from idsvc.jobs.identities import name_key
from idsvc.jobs.search import load, require_files
from idsvc.jobs.thresholds import resolve_threshold


def verify(home: Home, a: ImageInput, b: ImageInput, *, threshold: float | None = None,
           aligned: bool = False) -> dict[str, Any]:
    """The cosine score of the two photos' main faces against the threshold (``aligned``: both are face crops)."""
    require_files(a, b)
    thr, source = resolve_threshold(home, threshold)
    img_a, img_b = load(home, a), load(home, b)  # both decoded before any detection: bad input fails fast
    pipeline = home.model.pipeline
    fa = pipeline.one_face(img_a, strict=False, given_aligned=aligned)
    fb = pipeline.one_face(img_b, strict=False, given_aligned=aligned)
    va, vb = pipeline.embed([fa.aligned, fb.aligned])
    score = float(va @ vb)
    return {"score": round(score, 6), "threshold": thr, "threshold_source": source, "same": score >= thr,
            "model_version": home.model.version}


def verify_identity(home: Home, image: ImageInput, name: str, *, threshold: float | None = None,
                    aligned: bool = False) -> dict[str, Any]:
    """The best score over ``name``'s templates of the active model version. Raises ``identity_not_found`` and
    ``model_mismatch`` (the identity has templates of other model versions only)."""
    require_files(image)
    name = name_key(name)
    thr, source = resolve_threshold(home, threshold)
    version = home.model.version
    vecs, others = home.registry.identity_embeddings(name, version)
    if not len(vecs):
        raise IdsvcError("model_mismatch", f"{name!r} has no templates for model {version} (only "
                         f"{', '.join(others) or 'none'}); run `idsvc reindex --model`", name=name)
    pipeline = home.model.pipeline
    fc = pipeline.one_face(load(home, image), strict=False, given_aligned=aligned)
    v = pipeline.embed([fc.aligned])[0]
    score = float((vecs @ v).max())
    return {"identity": name, "score": round(score, 6), "threshold": thr, "threshold_source": source,
            "same": score >= thr, "model_version": version}
