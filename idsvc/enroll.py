"""Enrollment: photos → one unambiguous, good face each → templates in the registry, crops on disk, vectors in the
index.

Bad photos are reported one by one and never half-stored; the others are committed in batches of ``COMMIT_EVERY``, so
a killed run keeps what it finished and a re-run skips images already stored (same sha256).
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from idsvc.cancel import commit
from idsvc.crash import crash_point
from idsvc.errors import IdsvcError, from_os_error
from idsvc.home import Home
from idsvc.imageio import LoadedImage

if TYPE_CHECKING:
    from idsvc.pipeline import FaceCrop  # a type only: importing the pipeline would load torch for every command

log = logging.getLogger(__name__)
COMMIT_EVERY = 16  # images per registry transaction: progress survives a kill
#: Characters a name may not hold anywhere: C0/C1 controls and DEL, and the invisible or bidi formatting characters
#: (soft hyphen, zero-width, LRM/RLM, embeddings and overrides, isolates, line/paragraph separators, BOM) that make
#: two names look alike or reorder what an operator reads. Written as ranges so Python and ECMA read them alike.
_FORBIDDEN = (r"\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
              r"\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb")
#: An identity name: 1-255 characters, no slash, backslash or forbidden character, no whitespace at either end, not
#: "." or ".." (a client's URL handling would turn /v1/identities/.. into another route). The same pattern is the
#: API's documented path and body schema (ECMA and Python read it alike).
_END = r"[^\s/\\" + _FORBIDDEN + "]"  # first or last character: no whitespace either
_END_NOT_DOT = r"[^\s/\\." + _FORBIDDEN + "]"
_MIDDLE = r"[^/\\" + _FORBIDDEN + "]"
#: Spelled out by length rather than with a look-ahead, which pydantic's regex engine does not take: one character
#: (not "."), two (not ".."), or three to 255.
NAME_PATTERN = (f"^(?:{_END_NOT_DOT}|{_END_NOT_DOT}{_END}|\\.{_END_NOT_DOT}|{_END}{_MIDDLE}{{1,253}}{_END})$")
NAME_RE = re.compile(NAME_PATTERN)

Progress = Callable[[int], None]
#: (source name for messages, a function that loads the image): paths for the CLI, bytes for the API.
Item = tuple[str, Callable[[], LoadedImage]]


def check_name(name: str) -> str:
    """An identity name in Unicode NFC (so "é" typed two ways is one identity): 1-255 characters, no slashes,
    control, invisible or bidi characters, no surrounding spaces, not "." or "..". Returns the normalised name;
    raises ``invalid_argument``."""
    normal = unicodedata.normalize("NFC", name)
    if not NAME_RE.fullmatch(normal) or normal.strip() != normal:
        raise IdsvcError("invalid_argument", f"invalid identity name {name!r} (1-255 characters, no slashes, "
                         "no control, invisible or bidi characters, no surrounding spaces, not '.' or '..')",
                         name=name)
    return normal


def name_key(name: str) -> str:
    """How a name given to look an identity up is compared with stored names (stored names are NFC)."""
    return unicodedata.normalize("NFC", name)


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
        new = [NewTemplate(embedding=v, model_version=version, image_sha256=img.sha256,
                           source_path=img.stored_source,
                           box=list(fc.face.box), landmarks=fc.face.landmarks.tolist(), det_prob=fc.face.prob,
                           quality=fc.quality.score(), quality_details=fc.quality.as_dict(),
                           crop_landmarks=stored_landmarks(fc.aligned))
               for v, (src, img, fc) in zip(vecs, self.pending)]
        commit()  # past a timed-out request's last chance to stop (idsvc.cancel)
        ids = home.registry.add_templates(self.name, new, store_crops=lambda ids: home.crops.save(
            {tid: fc.aligned.crop for tid, (_, _, fc) in zip(ids, self.pending)}))
        crash_point("enroll.committed")
        index.add(np.array(ids), vecs)
        for tid, (src, _, fc) in zip(ids, self.pending):
            self.accepted.append({"path": src, "template_id": tid, "quality": fc.quality.as_dict()})
        self.pending.clear()


def enroll(home: Home, name: str, items: Iterable[Item], progress: Progress | None = None, *,
           aligned: bool = False, commit_every: int | None = COMMIT_EVERY) -> dict[str, Any]:
    """Enroll images into ``name`` (created if new); ``aligned``: each photo is an aligned face crop.
    ``commit_every``: images per transaction (None: one transaction for the call, as an HTTP request is all or
    nothing). Returns accepted / rejected / skipped, one entry per image."""
    name = check_name(name)
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
            except Exception as exc:  # one photo's unexpected failure costs that photo, not the batch
                log.exception("%s: unexpected failure while reading or detecting", src)
                err = from_os_error(exc) or IdsvcError("internal", f"{src}: internal error ({exc.__class__.__name__})")
                rejected.append({"path": src, "code": err.code, "reason": err.message})
            if commit_every is not None and len(batch.pending) >= commit_every:
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
