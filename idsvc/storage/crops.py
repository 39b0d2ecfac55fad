"""The crop store: each template's aligned face crop, kept losslessly so a model upgrade can re-embed it exactly.

Crops are named after their template id under ``HOME/crops``. The registry records the path *relative to the
home* (``crops/12.png``), so a home that is moved, copied or restored from a backup finds its crops with no step; and
where the five landmarks lie in the crop (a face that filled its photo is kept whole, not on idsvc's template, and an
encoder with its own template must re-align it from them). Re-making a lost crop from its source photo needs the face
pipeline, so it lives above storage (``idsvc.jobs.stored_crops``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from idsvc.errors import IdsvcError, from_write_error

CROPS_FOLDER = "crops"  # under the home
CROP_SIZE = 160  # stored at the template's native size; other model input sizes resize exactly


class CropStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / CROPS_FOLDER

    def path(self, template_id: int) -> Path:
        return self.root / f"{template_id}.png"

    @staticmethod
    def ref(template_id: int) -> str:
        """What the registry records for a template's crop: its place relative to the home."""
        return f"{CROPS_FOLDER}/{template_id}.png"

    def resolve(self, ref: str | None) -> Path | None:
        """Where a recorded crop is on this machine: a relative reference (every crop since migration 0003) is under
        this home; an absolute one (a registry written by an older idsvc that no migration reached, or a template
        copied by ``migrate`` from a home that kept its crops) is taken as it is."""
        if not ref:
            return None
        p = Path(str(ref))
        return p if p.is_absolute() else self.home / p

    def save(self, crops: dict[int, np.ndarray]) -> dict[int, str]:
        """Write ``{template id: (CROP_SIZE, CROP_SIZE, 3) uint8 RGB crop}`` losslessly (PNG), so re-embedding it
        later reproduces the original input exactly; returns ``{template id: reference}``. Raises ``internal`` for a
        crop of another size (the caller resizes: pixels are the face pipeline's business)."""
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
        """Write ``{template id: PNG bytes}`` (``save``'s, or an imported archive's, already at ``CROP_SIZE``). All or
        nothing: a write that fails (a full disk) removes the files this call wrote before it raises ``disk_full`` or
        ``home_unwritable``."""
        written: list[Path] = []
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for tid, data in crops.items():
                dst = self.path(tid)
                written.append(dst)
                dst.write_bytes(data)
        except OSError as exc:
            for f in written:
                f.unlink(missing_ok=True)
            raise from_write_error(exc, f"cannot write crops in {self.root}") from None
        return {tid: self.ref(tid) for tid in crops}

    def exists(self, ref: str | None) -> bool:
        p = self.resolve(ref)
        return p is not None and p.is_file()

    def read_bytes(self, ref: str) -> bytes:
        p = self.resolve(ref)
        if p is None:
            raise IdsvcError("crop_missing", "a template has no recorded crop")
        return p.read_bytes()

    def read(self, ref: str) -> np.ndarray:
        """(CROP_SIZE, CROP_SIZE, 3) uint8 RGB. Raises ``crop_missing``."""
        import cv2

        p = self.resolve(ref)
        img = cv2.imread(str(p), cv2.IMREAD_COLOR) if p is not None else None
        if img is None:
            raise IdsvcError("crop_missing", f"could not read the crop {ref}", path=str(ref))
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def delete(self, refs: list[str | None]) -> None:
        for ref in refs:
            p = self.resolve(ref)
            if p is not None:
                p.unlink(missing_ok=True)
