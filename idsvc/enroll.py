"""Enrollment: photos → one unambiguous, good face each → templates in the registry, crops on disk, vectors in the
index.

Bad photos are reported one by one and never half-stored; the others are committed in batches of ``COMMIT_EVERY``, so
a killed run keeps what it finished and a re-run skips images already stored (same sha256).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from idsvc.errors import IdsvcError
from idsvc.home import Home
from idsvc.imageio import LoadedImage

if TYPE_CHECKING:
    from idsvc.pipeline import FaceCrop  # a type only: importing the pipeline would load torch for every command

log = logging.getLogger(__name__)
COMMIT_EVERY = 16  # images per registry transaction: progress survives a kill
#: An identity name: 1-255 characters, no slash, backslash or control character, no whitespace at either end. The
#: same pattern is the API's documented path and body schema (ECMA and Python read it alike).
NAME_PATTERN = r"^[^\s/\\\x00-\x1f\x7f]([^/\\\x00-\x1f\x7f]{0,253}[^\s/\\\x00-\x1f\x7f])?$"
NAME_RE = re.compile(NAME_PATTERN)

Progress = Callable[[int], None]
#: (source name for messages, a function that loads the image): paths for the CLI, bytes for the API.
Item = tuple[str, Callable[[], LoadedImage]]


def check_name(name: str) -> str:
    """An identity name: 1-255 characters, no slashes or control characters, no surrounding spaces."""
    if not NAME_RE.fullmatch(name) or name.strip() != name:
        raise IdsvcError("invalid_argument", f"invalid identity name {name!r} (1-255 characters, no slashes, "
                         "no control characters, no surrounding spaces)", name=name)
    return name


class _Batch:
    """Accepted faces waiting for one embedding pass and one transaction."""

    def __init__(self, home: Home, name: str) -> None:
        self.home, self.name = home, name
        self.pending: list[tuple[str, LoadedImage, FaceCrop]] = []
        self.accepted: list[dict[str, Any]] = []

    def flush(self, index: Any) -> None:
        from idsvc.crops import stored_landmarks
        from idsvc.registry import NewTemplate

        if not self.pending:
            return
        home, version = self.home, self.home.model.version
        vecs = home.model.pipeline.embed([fc.aligned for _, _, fc in self.pending])
        new = [NewTemplate(embedding=v, model_version=version, image_sha256=img.sha256, source_path=src,
                           box=list(fc.face.box), landmarks=fc.face.landmarks.tolist(), det_prob=fc.face.prob,
                           quality=fc.quality.score(), quality_details=fc.quality.as_dict(),
                           crop_landmarks=stored_landmarks(fc.aligned))
               for v, (src, img, fc) in zip(vecs, self.pending)]
        ids = home.registry.add_templates(self.name, new)
        paths = home.crops.save({tid: fc.aligned.crop for tid, (_, _, fc) in zip(ids, self.pending)})
        home.registry.set_crop_paths(paths)
        index.add(np.array(ids), vecs)
        for tid, (src, _, fc) in zip(ids, self.pending):
            self.accepted.append({"path": src, "template_id": tid, "quality": fc.quality.as_dict()})
        self.pending.clear()


def enroll(home: Home, name: str, items: Iterable[Item], progress: Progress | None = None, *,
           aligned: bool = False) -> dict[str, Any]:
    """Enroll images into ``name`` (created if new); ``aligned``: each photo is an aligned face crop.
    Returns accepted / rejected / skipped, one entry per image."""
    check_name(name)
    t0 = time.perf_counter()
    rejected: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    with home.lock.hold():
        index = home.index.open().index
        existed = home.registry.has_identity(name)
        batch = _Batch(home, name)
        seen: set[str] = set()
        for src, load in items:
            try:
                image = load()
                verdict = _known(home, name, image, seen)
                if verdict is None:
                    batch.pending.append((src, image, home.model.pipeline.one_face(image, given_aligned=aligned)))
                elif verdict == "skip":
                    skipped.append({"path": src, "reason": "already enrolled" if image.sha256 not in seen
                                    else "same image given twice"})
                    seen.add(image.sha256)
            except IdsvcError as exc:
                rejected.append({"path": src, "code": exc.code, "reason": exc.message})
            if len(batch.pending) >= COMMIT_EVERY:
                batch.flush(index)
            if progress:
                progress(1)
        batch.flush(index)
        if batch.accepted:
            home.index.save(index)
    log.info("enrolled %d images into %r (%d rejected, %d skipped) in %.2f s", len(batch.accepted), name,
             len(rejected), len(skipped), time.perf_counter() - t0)
    return {"identity": name, "created": bool(batch.accepted) and not existed, "model_version": home.model.version,
            "accepted": batch.accepted, "rejected": rejected, "skipped": skipped}


def _known(home: Home, name: str, image: LoadedImage, seen: set[str]) -> str | None:
    """None for a new image (and remember it), "skip" for one seen in this call or stored under ``name``.
    Raises ``already_enrolled`` when another identity holds it."""
    if image.sha256 in seen:
        return "skip"
    owner = home.registry.enrolled_shas([image.sha256]).get(image.sha256)
    if owner is None:
        seen.add(image.sha256)
        return None
    if owner == name:
        return "skip"
    raise IdsvcError("already_enrolled", f"{image.source}: already enrolled as {owner!r}", path=image.source,
                     identity=owner)
