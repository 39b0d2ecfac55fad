"""The crop store: each template's aligned face crop, kept losslessly so a model upgrade can re-embed it exactly.

Crops are named after their template id under ``HOME/crops``; the registry records the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from idsvc.errors import IdsvcError

CROP_SIZE = 160  # stored at the template's native size; other model input sizes resize exactly


class CropStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, template_id: int) -> Path:
        return self.root / f"{template_id}.png"

    def save(self, crops: dict[int, np.ndarray]) -> dict[int, str]:
        """Write ``{template id: (S, S, 3) uint8 crop}`` at ``CROP_SIZE``; returns ``{template id: path}``."""
        from idsvc.align import resize_crop, save_crop

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IdsvcError("home_unwritable", f"cannot create {self.root}: {exc.strerror}") from None
        paths = {}
        for tid, crop in crops.items():
            p = self.path(tid)
            save_crop(str(p), resize_crop(crop, CROP_SIZE))
            paths[tid] = str(p)
        return paths

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

    def crop_for(self, row: dict[str, Any], pipeline: Any) -> np.ndarray:
        """The stored crop of a template row, or (if it was lost) the crop re-made from the source photo when its
        hash still matches. Raises ``crop_missing`` when neither exists."""
        from idsvc.align import resize_crop

        crop_path = row.get("crop_path")
        if self.exists(crop_path):
            return self.read(str(crop_path))
        src = row.get("source_path")
        if src and Path(src).is_file():
            image = pipeline.load(src)
            if image.sha256 == row["image_sha256"]:
                return resize_crop(pipeline.one_face(image, strict=False).aligned.crop, CROP_SIZE)
        raise IdsvcError("crop_missing", f"template {row['id']}: its crop {crop_path} is missing and its source "
                         "photo is gone or changed; delete the template's identity or restore the crop",
                         template_id=row["id"])
