"""Are five points a face? The plausibility of a detector's five landmarks — eyes level enough, the nose below them,
the mouth below the nose, a mouth as wide as a mouth — and how far two detectors' points lie apart.

Why: an encoder sees the crop the five points align. On faces MTCNN was not trained for (a face filling the frame,
half in shadow, dark) it can put its points on the cheeks, the chin and the eyebrows while reporting a confident face;
the crop is then not a face, and SFace (which aligns by the points) fails where its own pipeline does not. The bounds
below are loose: each holds for more than 99.5% of MTCNN's points on ordinary CelebA photos, and all together put
0.5% of them in doubt (11 of the 2,171 photos of the CelebA proxies' originals; ``python bench/yunet_offset.py``
prints the spread), so an ordinary photo keeps MTCNN's points.
"""

from __future__ import annotations

import numpy as np

#: Bounds on the points in the face's own frame: eyes at (-0.5, 0) and (0.5, 0), units of the eye distance.
NOSE_DOWN = (0.15, 1.25)
MOUTH_DOWN = (0.55, 2.05)
MOUTH_WIDTH = (0.35, 1.35)
SIDEWAYS = 0.85  # nose and mouth centre at most this far from the eyes' midline (a turned head moves them)
ROLL_DEGREES = 60.0


def face_frame(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(the five points in the face's frame — eyes at (∓0.5, 0), y down, in eye distances —, the eye distance in
    pixels, the roll in degrees)."""
    p = np.asarray(points, np.float64)
    eyes = p[1] - p[0]
    dist = float(np.hypot(*eyes)) or 1e-6
    roll = float(np.degrees(np.arctan2(eyes[1], eyes[0])))
    c, s = eyes / dist
    rotate = np.array([[c, s], [-s, c]])
    return (p - (p[0] + p[1]) / 2) @ rotate.T / dist, dist, roll


def doubts(points: np.ndarray, shape: tuple[int, ...] | None = None) -> list[str]:
    """Why these five points do not look like a face's (empty: they do); with the photo's ``shape``, also eyes that
    lie outside it (a detector's box far larger than the photo)."""
    f, dist, roll = face_frame(points)
    nose, mouth_l, mouth_r = f[2], f[3], f[4]
    mouth = (mouth_l + mouth_r) / 2
    found = []
    if abs(roll) > ROLL_DEGREES:
        found.append(f"eyes tilted {roll:.0f}°")
    if not NOSE_DOWN[0] <= nose[1] <= NOSE_DOWN[1]:
        found.append(f"nose {nose[1]:.2f} eye distances below the eyes")
    if not MOUTH_DOWN[0] <= mouth[1] <= MOUTH_DOWN[1] or mouth[1] <= nose[1]:
        found.append(f"mouth {mouth[1]:.2f} eye distances below the eyes")
    if not MOUTH_WIDTH[0] <= mouth_r[0] - mouth_l[0] <= MOUTH_WIDTH[1]:
        found.append(f"mouth {mouth_r[0] - mouth_l[0]:.2f} eye distances wide")
    if max(abs(nose[0]), abs(mouth[0])) > SIDEWAYS:
        found.append("nose or mouth beside the eyes")
    if shape is not None:
        eyes = np.asarray(points, np.float64)[:2]
        h, w = shape[:2]
        slack = 0.25 * dist
        if (eyes < -slack).any() or (eyes[:, 0] > w + slack).any() or (eyes[:, 1] > h + slack).any():
            found.append("eyes outside the photo")
    return found


def apart(a: np.ndarray, b: np.ndarray) -> float:
    """How far two sets of five points lie apart: their mean distance in units of the mean eye distance."""
    eye = (np.hypot(*(a[1] - a[0])) + np.hypot(*(b[1] - b[0]))) / 2 or 1e-6
    return float(np.mean(np.hypot(*(np.asarray(a) - np.asarray(b)).T)) / eye)
