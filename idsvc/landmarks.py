"""The five-point landmark layouts faces are aligned to, and the similarity transform between two point sets.

Numbers, not pixels: the face pipeline warps photos onto idsvc's 160-px template with them, and SFace re-aligns a crop
onto ArcFace's 112-px template from its landmarks, so both need them and neither should import the other.
"""

from __future__ import annotations

import cv2
import numpy as np

#: (5, 2) landmarks at 160×160: left eye, right eye, nose, left and right mouth corner.
TEMPLATE_160 = np.array(
    [[53.5, 66.8], [106.5, 66.8], [80.0, 93.6], [56.3, 111.4], [103.7, 111.4]], dtype=np.float32
)

#: The point of idsvc's template a tight face is zoomed about (between the eyes and the mouth, a little above the
#: landmarks' mean, where FaceNet's own pipeline centres such a face), and by how much (``TIGHT_TEMPLATE_160``).
TIGHT_CENTER = (80.0, 86.0)
TIGHT_ZOOM = 1.2
#: idsvc's template for a face cut tighter than it (a face that fills its photo): the face 1.2 times larger about
#: ``TIGHT_CENTER``, so the crop holds the face and little of the black beyond the cut. facenet-pytorch's own pipeline
#: frames such faces 1.14–1.17 times larger than the template (MTCNN's box on the padded copy, CelebA tight cuts,
#: median), and FaceNet scores them best that way: 95.2% on CelebA tight-112 at 1.0, 95.4 at 1.1, 96.3 at 1.15,
#: 96.8 at 1.2 (its own pipeline 96.7%).
TIGHT_TEMPLATE_160 = ((TEMPLATE_160 - np.array(TIGHT_CENTER, np.float32)) * TIGHT_ZOOM
                      + np.array(TIGHT_CENTER, np.float32)).astype(np.float32)


#: (5, 2) landmarks of the ArcFace / InsightFace 112×112 alignment (SFace and most crops exported by other systems).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def template(size: int, base: np.ndarray = TEMPLATE_160) -> np.ndarray:
    """A template (by default idsvc's 160-px one) scaled to a ``size``×``size`` crop."""
    base_size = 112.0 if base is ARCFACE_112 else 160.0  # TEMPLATE_160 and TIGHT_TEMPLATE_160 are 160-px layouts
    return base * (size / base_size)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 similarity (rotation, uniform scale, shift) taking ``src`` points onto ``dst``: robust (LMedS) when
    OpenCV finds one, else the plain least-squares fit of all points (degenerate landmarks, e.g. all on a line)."""
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if matrix is not None:
        return matrix
    s, d = src.astype(np.float64), dst.astype(np.float64)
    a = np.zeros((2 * len(s), 4))
    a[0::2] = np.c_[s[:, 0], -s[:, 1], np.ones(len(s)), np.zeros(len(s))]
    a[1::2] = np.c_[s[:, 1], s[:, 0], np.zeros(len(s)), np.ones(len(s))]
    (p, q, tx, ty), *_ = np.linalg.lstsq(a, d.reshape(-1), rcond=None)
    return np.array([[p, -q, tx], [q, p, ty]], dtype=np.float64)


def least_squares_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 similarity taking ``src`` points onto ``dst`` in the least-squares sense (Umeyama, 1991; no
    reflection) — every point counts, as OpenCV's ``FaceRecognizerSF.alignCrop`` fits SFace's input. ``similarity``
    (LMedS) is the robust alternative, which ignores the worst points."""
    s, d = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - ms, d - md
    u, sv, vt = np.linalg.svd(dc.T @ sc / len(s))
    sign = np.diag([1.0, float(np.sign(np.linalg.det(u @ vt)) or 1.0)])
    rotation = u @ sign @ vt
    variance = sc.var(axis=0).sum()
    scale = float((sv * np.diag(sign)).sum() / variance) if variance > 1e-12 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = md - scale * rotation @ ms
    return matrix
