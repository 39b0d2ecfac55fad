"""A detected face — its box, the detector's probability and its five landmarks — and the rules that order faces:
facenet's "the" face of a photo, and box overlap."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face in image pixel coordinates.

    box: (x1, y1, x2, y2) float; prob: the detector's probability (MTCNN's, or YuNet's score; not a match score);
    landmarks: (5, 2) float32 — left eye, right eye, nose, left and right mouth corner (as seen in the image).
    """

    box: tuple[float, float, float, float]
    prob: float
    landmarks: np.ndarray
    padded: bool = False  # found only after the photo was given a border (a face that fills the frame)
    points: str = "mtcnn"  # whose five points these are: "mtcnn", "yunet" (moved into MTCNN's convention) or
    # "refined" (MTCNN's last stage on the box YuNet's points give)

    @property
    def size(self) -> float:
        """Short side of the box in pixels."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


def center_weighted_score(face: Face, image_shape: tuple[int, ...], center_weight: float = 2.0) -> float:
    """facenet's rule for "the" face of a photo: box area minus ``center_weight`` × squared offset from the centre.

    The largest face alone picks a bystander in about 2% of LFW photos; weighting by centrality fixes most of them.
    """
    h, w = image_shape[:2]
    x1, y1, x2, y2 = face.box
    area = (x2 - x1) * (y2 - y1)
    offset_sq = ((x1 + x2) / 2 - w / 2) ** 2 + ((y1 + y2) / 2 - h / 2) ** 2
    return float(area - center_weight * offset_sq)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0
