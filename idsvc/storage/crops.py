"""The crop store: each template's aligned face crop, kept losslessly so a model upgrade can re-embed it exactly.

Crops are named after their template id under ``HOME/crops``; the registry records the path and where the five
landmarks lie in the crop (a face that filled its photo is kept whole, not on idsvc's template, and an encoder with
its own template must re-align it from them). Re-making a lost crop from its source photo needs the face pipeline,
so it lives above storage (``idsvc.jobs.stored_crops``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from idsvc.errors import IdsvcError

CROP_SIZE = 160  # stored at the template's native size; other model input sizes resize exactly


class CropStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, template_id: int) -> Path:
        return self.root / f"{template_id}.png"

    def save(self, crops: dict[int, np.ndarray]) -> dict[int, str]:
        """Write ``{template id: (CROP_SIZE, CROP_SIZE, 3) uint8 RGB crop}`` losslessly (PNG), so re-embedding it
        later reproduces the original input exactly; returns ``{template id: path}``. Raises ``internal`` for a crop
        of another size (the caller resizes: pixels are the face pipeline's business)."""
        import cv2

        encoded = {}
        for tid, crop in crops.items():
            if crop.shape[:2] != (CROP_SIZE, CROP_SIZE):
                raise IdsvcError("internal", f"the crop of template {tid} is {crop.shape[:2]}, not {CROP_SIZE} px")
            ok, png = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
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
        """(CROP_SIZE, CROP_SIZE, 3) uint8 RGB. Raises ``crop_missing``."""
        import cv2

        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise IdsvcError("crop_missing", f"could not read the crop {path}", path=path)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    @staticmethod
    def delete(paths: list[str | None]) -> None:
        for p in paths:
            if p:
                Path(p).unlink(missing_ok=True)
