"""A template's crop as the jobs need it: stored at ``CROP_SIZE`` with where its landmarks lie, read back at any
encoder's input size, or — when the file was lost — re-made from the template's source photo if that photo is still
the same one (its sha256 matches). ``reindex --model`` and ``doctor --fix`` use it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from idsvc.errors import IdsvcError
from idsvc.storage.crops import CROP_SIZE, CropStore

if TYPE_CHECKING:  # the face pipeline imports OpenCV and torch: loaded where a crop is made, not by every command
    from idsvc.faces.align import Aligned
    from idsvc.faces.reader import FaceReader
    from idsvc.storage.registry import Registry

log = logging.getLogger(__name__)
T = TypeVar("T")


def stored_landmarks(aligned: Aligned) -> list[list[float]]:
    """The crop's landmarks in the stored ``CROP_SIZE`` crop."""
    return (aligned.landmarks * (CROP_SIZE / aligned.crop.shape[0])).tolist()


def save_crops(crops: CropStore, by_id: dict[int, np.ndarray]) -> dict[int, str]:
    """Store ``{template id: aligned crop at any size}`` at ``CROP_SIZE``; returns ``{template id: path}``."""
    from idsvc.faces.align import resize_crop

    return crops.save({tid: resize_crop(crop, CROP_SIZE) for tid, crop in by_id.items()})


def written_in_transaction(crops: CropStore, registry: Registry, write: Callable[[T], dict[int, str]],
                           ) -> tuple[Callable[[T], dict[int, str]], Callable[[], None]]:
    """(``store_crops``, ``undo``) for a registry transaction that writes crops inside it: ``undo()``, called when the
    transaction failed, removes the crops it wrote for templates the registry does not hold — a failed enroll leaves
    no orphan crop on a full disk. When the registry cannot say (the database went away during the commit, so the
    templates may be stored), the crops stay: an orphan is harmless and ``doctor --fix`` sweeps it; a lost crop is
    not."""
    written: dict[int, str] = {}

    def store(ids: T) -> dict[int, str]:
        refs = write(ids)
        written.update(refs)
        return refs

    def undo() -> None:
        if not written:
            return
        try:
            kept = registry.existing_template_ids(list(written))
        except IdsvcError as exc:
            log.warning("cannot tell which of %d crops were committed (%s); left for doctor --fix", len(written),
                        exc.code)
            return
        crops.delete([ref for tid, ref in written.items() if tid not in kept])

    return store, undo


def crop_for(crops: CropStore, row: dict[str, Any], reader: FaceReader, size: int = CROP_SIZE) -> Aligned:
    """The stored crop of a template row (``crop_path``, ``crop_landmarks``) at ``size``, or (if it was lost) the
    crop re-made from the source photo when its hash still matches. Raises ``crop_missing`` when neither exists."""
    from idsvc.faces.align import Aligned, resize_crop
    from idsvc.landmarks import template

    crop_path = row.get("crop_path")
    if crops.exists(crop_path):
        marks = row.get("crop_landmarks")
        landmarks = np.array(json.loads(marks), np.float32) if marks else template(CROP_SIZE)
        return Aligned(resize_crop(crops.read(str(crop_path)), size), landmarks * np.float32(size / CROP_SIZE))
    src = row.get("source_path")
    if src and Path(src).is_absolute() and Path(src).is_file():  # an upload's ``upload:NAME`` is never opened
        image = reader.load(src)
        if image.sha256 == row["image_sha256"]:
            made = reader.one_face(image, strict=False).aligned
            return Aligned(resize_crop(made.crop, size), made.landmarks * np.float32(size / made.crop.shape[0]))
    raise IdsvcError("crop_missing", f"template {row['id']}: its crop {crop_path} is missing and its source "
                     "photo is gone or changed; delete the template's identity or restore the crop",
                     template_id=row["id"])
