"""Measure, on ordinary CelebA photos (never LFW), the two constants behind idsvc's landmark checks:

- ``idsvc.faces.yunet.MTCNN_OFFSET``: where MTCNN's five points lie relative to YuNet's once YuNet's are aligned onto
  ArcFace's 112-px template (the median over photos both detectors find), so YuNet's points can be moved into MTCNN's
  convention;
- the spread of MTCNN's points in the face's own frame (eyes at ∓0.5, units of the eye distance), the ground for
  the bounds in ``idsvc.faces.points``: each bound should hold for ≥ 99.5% of these photos.

    python bench/yunet_offset.py [--every 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from idsvc.faces.detect import Detector
from idsvc.faces.images import load_image
from idsvc.faces.points import doubts, face_frame
from idsvc.faces.yunet import YuNet
from idsvc.landmarks import ARCFACE_112, least_squares_similarity
from idsvc.settings import SHARED_DATA, load_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=int, default=2, help="use every n-th CelebA photo")
    args = ap.parse_args()
    photos = sorted((SHARED_DATA / "celeba").glob("*/*.jpg"))[:: args.every]
    detector, yunet = Detector(load_settings(device="cpu")), YuNet(raw=True)
    offsets, frames, flagged = [], [], 0
    for i in range(0, len(photos), 32):
        images = [load_image(p, max_pixels=10**8, min_side=8).pixels for p in photos[i:i + 32]]
        for rgb, faces in zip(images, detector.detect_batch(images)):
            if not faces:
                continue
            m = faces[0].landmarks
            frames.append(face_frame(m)[0])
            flagged += bool(doubts(m))
            second = yunet.detect(rgb)
            if second:
                y = second[0].landmarks.astype(np.float64)
                matrix = least_squares_similarity(y, ARCFACE_112)
                offsets.append(np.c_[m, np.ones(5)] @ matrix.T - ARCFACE_112)
    off = np.median(np.array(offsets), axis=0)
    f = np.array(frames)
    nose_y, mouth_y = f[:, 2, 1], (f[:, 3, 1] + f[:, 4, 1]) / 2
    width, side = f[:, 4, 0] - f[:, 3, 0], np.maximum(abs(f[:, 2, 0]), abs((f[:, 3, 0] + f[:, 4, 0]) / 2))
    print(f"{len(photos)} CelebA photos, {len(frames)} with an MTCNN face, {len(offsets)} also with a YuNet face")
    print("MTCNN_OFFSET (ArcFace-112 px, median):", np.round(off, 2).tolist())
    print("its spread (interquartile):", np.round(np.percentile(offsets, 75, 0) - np.percentile(offsets, 25, 0), 2)
          .tolist())
    for label, v in (("nose below eyes", nose_y), ("mouth below eyes", mouth_y), ("mouth width", width),
                     ("nose/mouth sideways", side)):
        print(f"{label:<22} 0.25% {np.percentile(v, 0.25):.2f}  50% {np.median(v):.2f}  99.75% "
              f"{np.percentile(v, 99.75):.2f}")
    print(f"MTCNN points in doubt on these ordinary photos: {flagged} of {len(frames)} "
          f"({flagged / max(1, len(frames)) * 100:.2f}%)")


if __name__ == "__main__":
    main()
