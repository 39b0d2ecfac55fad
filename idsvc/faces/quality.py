"""How good a detected face is for enrollment: its size, detection probability, sharpness and pose, measured on the
aligned crop, and the named reasons the enrollment gate refuses it."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from idsvc import results
from idsvc.faces.align import Aligned
from idsvc.faces.face import Face


@dataclass(frozen=True)
class Quality:
    """Measured quality of one face; the gate compares these against ``quality_*`` settings."""

    face_px: float      # short side of the detection box, pixels
    det_prob: float     # MTCNN probability
    sharpness: float    # variance of the Laplacian of the aligned grey crop (higher = sharper)
    yaw: float          # |nose - eye midpoint| / eye distance along the eye line (0 = frontal)
    outside: float = 0.0          # fraction of the aligned crop that lies outside the photo (tight crops: large)
    preparation: str = "aligned"  # aligned | tight | given_aligned (see Pipeline.prepare)
    photo_format: str | None = None  # the photo's file format (JPEG, HEIF, AVIF, …)

    def score(self) -> float:
        """One number in [0, 1] for ranking templates; not a probability."""
        s = min(1.0, self.face_px / 112.0) * self.det_prob
        s *= min(1.0, self.sharpness / 100.0) ** 0.5
        return float(s * max(0.0, 1.0 - self.yaw))

    def report(self) -> results.Quality:
        """The quality as results report it (rounded, with its score)."""
        return results.Quality.model_validate(self.as_dict())

    def as_dict(self) -> dict[str, float | str]:
        return {"face_px": round(self.face_px, 1), "det_prob": round(self.det_prob, 4),
                "sharpness": round(self.sharpness, 1), "yaw": round(self.yaw, 3), "score": round(self.score(), 4),
                "outside": round(self.outside, 3), "preparation": self.preparation,
                **({"format": self.photo_format} if self.photo_format else {})}


def measure_quality(face: Face, aligned: Aligned, *, outside: float = 0.0, preparation: str = "aligned",
                    photo_format: str | None = None) -> Quality:
    grey = cv2.cvtColor(aligned.crop, cv2.COLOR_RGB2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    le, re, nose = aligned.landmarks[0], aligned.landmarks[1], aligned.landmarks[2]
    eye_vec = re - le
    eye_dist = float(np.linalg.norm(eye_vec)) or 1.0
    yaw = abs(float(np.dot(nose - (le + re) / 2, eye_vec / eye_dist))) / eye_dist
    return Quality(face_px=face.size, det_prob=face.prob, sharpness=sharpness, yaw=yaw, outside=outside,
                   preparation=preparation, photo_format=photo_format)


def quality_problems(q: Quality, *, min_face_px: float, min_det_prob: float, min_sharpness: float,
                     max_yaw: float) -> list[str]:
    """Named reasons a face fails the gate (empty = passes)."""
    reasons = []
    if q.face_px < min_face_px:
        reasons.append(f"face too small ({q.face_px:.0f} px < {min_face_px:g} px)")
    if q.det_prob < min_det_prob and q.preparation != "given_aligned":  # the caller vouches for a given crop
        reasons.append(f"low detection probability ({q.det_prob:.2f} < {min_det_prob:g})")
    if q.sharpness < min_sharpness:
        reasons.append(f"too blurry (sharpness {q.sharpness:.1f} < {min_sharpness:g})")
    if q.yaw > max_yaw:
        reasons.append(f"extreme pose (yaw {q.yaw:.2f} > {max_yaw:g})")
    return reasons
