"""The crop store: each template's aligned face crop, kept losslessly so a model upgrade can re-embed it exactly.

Crops are named after their template id under ``HOME/crops``; the registry records the path and where the five
landmarks lie in the crop (a face that filled its photo is kept whole, not on idsvc's template, and an encoder with
its own template must re-align it from them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from idsvc.errors import IdsvcError

if TYPE_CHECKING:
    from idsvc.align import Aligned

CROP_SIZE = 160  # stored at the template's native size; other model input sizes resize exactly


def stored_landmarks(aligned: Aligned) -> list[list[float]]:
    """The crop's landmarks in the stored ``CROP_SIZE`` crop."""
    return (aligned.landmarks * (CROP_SIZE / aligned.crop.shape[0])).tolist()


class CropStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, template_id: int) -> Path:
        return self.root / f"{template_id}.png"

    def save(self, crops: dict[int, np.ndarray]) -> dict[int, str]:
        """Write ``{template id: (S, S, 3) uint8 crop}`` at ``CROP_SIZE``, losslessly (PNG), so re-embedding it
        later reproduces the original input exactly; returns ``{template id: path}``."""
        import cv2

        from idsvc.align import resize_crop

        encoded = {}
        for tid, crop in crops.items():
            ok, png = cv2.imencode(".png", cv2.cvtColor(resize_crop(crop, CROP_SIZE), cv2.COLOR_RGB2BGR))
            if not ok:
                raise IdsvcError("internal", f"could not encode the crop of template {tid} as PNG")
            encoded[tid] = png.tobytes()
        return self.save_bytes(encoded)

    def save_bytes(self, crops: dict[int, bytes]) -> dict[int, str]:
        """Write ``{template id: PNG bytes}`` (``save``'s, or an imported archive's, already at ``CROP_SIZE``)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for tid, data in crops.items():
                self.path(tid).write_bytes(data)
        except OSError as exc:
            raise IdsvcError("home_unwritable", f"cannot write crops in {self.root}: {exc.strerror}") from None
        return {tid: str(self.path(tid)) for tid in crops}

    @staticmethod
    def exists(path: str | None) -> bool:
        return bool(path) and Path(str(path)).is_file()

    @staticmethod
    def read(path: str) -> np.ndarray:
        from idsvc.align import read_crop

        return read_crop(path)

    @staticmethod
    def delete(paths: list[str | None]) -> None:
        for p in paths:
            if p:
                Path(p).unlink(missing_ok=True)

    def crop_for(self, row: dict[str, Any], pipeline: Any, size: int = CROP_SIZE) -> Aligned:
        """The stored crop of a template row (``crop_path``, ``crop_landmarks``) at ``size``, or (if it was lost)
        the crop re-made from the source photo when its hash still matches. Raises ``crop_missing`` when neither
        exists."""
        from idsvc.align import Aligned, resize_crop, template

        crop_path = row.get("crop_path")
        if self.exists(crop_path):
            marks = row.get("crop_landmarks")
            landmarks = np.array(json.loads(marks), np.float32) if marks else template(CROP_SIZE)
            return Aligned(resize_crop(self.read(str(crop_path)), size), landmarks * np.float32(size / CROP_SIZE))
        src = row.get("source_path")
        if src and Path(src).is_absolute() and Path(src).is_file():  # an upload's ``upload:NAME`` is never opened
            image = pipeline.load(src)
            if image.sha256 == row["image_sha256"]:
                made = pipeline.one_face(image, strict=False).aligned
                return Aligned(resize_crop(made.crop, size),
                               made.landmarks * np.float32(size / made.crop.shape[0]))
        raise IdsvcError("crop_missing", f"template {row['id']}: its crop {crop_path} is missing and its source "
                         "photo is gone or changed; delete the template's identity or restore the crop",
                         template_id=row["id"])
