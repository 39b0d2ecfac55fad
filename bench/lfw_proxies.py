"""Build the proxy benchmarks for tight and greyscale face crops from LFW View 2 (never in git; evaluation only).

- ``lfw-tight``: each photo cut to an ArcFace-style 112×112 aligned face from its detected landmarks (the layout ID
  cards, camera exports and other face systems hand over).
- ``lfw-grey-tight``: the same crops in greyscale under a strong one-sided illumination gradient (infrared door
  cameras, ID scanners).

Each folder gets ``images/<Name>/<Name>_NNNN.<ext>`` and a copy of ``pairs.txt``, so that
``idsvc eval pairs --images OUT/lfw-tight/images --pairs OUT/lfw-tight/pairs.txt`` scores View 2 on it. Photos where
MTCNN finds no face are cut from the centre instead (counted in the printed summary).

    python bench/lfw_proxies.py --out /tmp/idsvc-proxies
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from idsvc.faces.align import align, center_crop
from idsvc.faces.images import load_image
from idsvc.landmarks import ARCFACE_112
from idsvc.measurement.pairs import read_pairs
from idsvc.settings import SHARED_DATA, load_settings


def grey_with_hard_light(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Greyscale, lit strongly from one side: a horizontal gain ramp from 0.25 to 1.6 (side chosen at random), then
    clipped, as a single directional light on a face does."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    ramp = np.linspace(0.25, 1.6, grey.shape[1], dtype=np.float32)
    if rng.random() < 0.5:
        ramp = ramp[::-1]
    return np.clip(grey * ramp[None, :], 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw", type=Path, default=SHARED_DATA / "lfw")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from idsvc.faces.detect import Detector

    pairs = read_pairs(args.lfw / "pairs.txt", args.lfw / "images")
    photos = sorted({p for pr in pairs for p in (pr.a, pr.b)})
    detector = Detector(load_settings(device="cpu"))
    rng = np.random.default_rng(args.seed)
    tight_root, grey_root = args.out / "lfw-tight", args.out / "lfw-grey-tight"
    for root in (tight_root, grey_root):
        (root / "images").mkdir(parents=True, exist_ok=True)
        shutil.copy(args.lfw / "pairs.txt", root / "pairs.txt")
    t0, missing = time.perf_counter(), 0
    for i in range(0, len(photos), 64):
        part = photos[i:i + 64]
        images = [load_image(p, max_pixels=10**8, min_side=8).pixels for p in part]
        for path, rgb, faces in zip(part, images, detector.detect_batch(images)):
            if faces:
                crop = align(rgb, faces[0].landmarks, 112, base=ARCFACE_112).crop
            else:
                missing += 1
                crop = center_crop(rgb, 112, fraction=0.45)
            rel = path.relative_to(args.lfw / "images")
            for root, img in ((tight_root, cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)),
                              (grey_root, grey_with_hard_light(crop, rng))):  # a one-channel JPEG
                dst = root / "images" / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(dst), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    print(f"{len(photos)} photos → {tight_root} and {grey_root} in {time.perf_counter() - t0:.0f} s; "
          f"{missing} without a detected face (centre crop)")


if __name__ == "__main__":
    main()
