"""Alignment: a similarity transform of MTCNN's five landmarks onto a canonical template, and the quality measures.

The template is the mean landmark layout of the framing the FaceNet weights were trained on (MTCNN box plus a 32 px
margin on 250 px photos, resized to 160 px), measured on 314 CelebA photos and made left-right symmetric. Aligning
to it keeps the pretrained model's framing while removing in-plane rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from idsvc.detect import Face
from idsvc.errors import IdsvcError

#: (5, 2) landmarks at 160×160: left eye, right eye, nose, left and right mouth corner.
TEMPLATE_160 = np.array(
    [[53.5, 66.8], [106.5, 66.8], [80.0, 93.6], [56.3, 111.4], [103.7, 111.4]], dtype=np.float32
)


#: (5, 2) landmarks of the ArcFace / InsightFace 112×112 alignment (SFace and most crops exported by other systems).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
BORDERS = {"black": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}


def template(size: int, base: np.ndarray = TEMPLATE_160) -> np.ndarray:
    """A template (by default idsvc's 160-px one) scaled to a ``size``×``size`` crop."""
    base_size = 112.0 if base is ARCFACE_112 else 160.0
    return base * (size / base_size)


@dataclass(frozen=True)
class Aligned:
    """crop: (size, size, 3) uint8 RGB; landmarks: (5, 2) in crop coordinates."""

    crop: np.ndarray
    landmarks: np.ndarray


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


def align(rgb: np.ndarray, landmarks: np.ndarray, size: int, *, base: np.ndarray = TEMPLATE_160,
          border: str = "black") -> Aligned:
    """Warp ``rgb`` so that ``landmarks`` land on the template (``base`` scaled to ``size``).

    When the face is much larger than the crop, the image is first shrunk with area averaging, since a bilinear warp
    alone would alias. ``border`` fills what lies outside the photo: black, reflect or replicate.
    """
    dst = template(size, base)
    src = landmarks.astype(np.float32)
    matrix = similarity(src, dst)
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    image = rgb
    if scale < 0.5:
        factor = min(1.0, scale * 2.0)
        h, w = rgb.shape[:2]
        image = cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        src = src * np.array([image.shape[1] / w, image.shape[0] / h], dtype=np.float32)
        matrix = similarity(src, dst)
    # Outside the photo is black: on tight crops (a face filling the frame) replicated edges smear into streaks that
    # cost the same-person score 0.2 on the bundled samples; black costs least (measured, see the README).
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=BORDERS[border],
                          borderValue=(0, 0, 0))
    moved = (np.c_[src, np.ones(len(src), dtype=np.float32)] @ matrix.T).astype(np.float32)
    return Aligned(crop=crop, landmarks=moved)


def outside_fraction(shape: tuple[int, ...], landmarks: np.ndarray, size: int, base: np.ndarray = TEMPLATE_160,
                     step: int = 4) -> float:
    """The fraction of the aligned crop that would come from outside the photo: ~0 for an ordinary photo, large for
    a face that fills the frame (a tight crop), where the template's margin asks for pixels the photo lacks."""
    matrix = similarity(landmarks.astype(np.float32), template(size, base))
    inverse = cv2.invertAffineTransform(matrix)
    ys, xs = np.mgrid[0:size:step, 0:size:step]
    pts = np.c_[xs.ravel() + 0.5, ys.ravel() + 0.5, np.ones(xs.size)] @ inverse.T
    h, w = shape[:2]
    return float(np.mean((pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)))


def whole_image_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """A photo that *is* the aligned face (``--aligned``), squared by reflecting its short side, resized to
    ``size``."""
    h, w = rgb.shape[:2]
    if h != w:
        d = abs(h - w)
        pad = ((d // 2, d - d // 2), (0, 0), (0, 0)) if h < w else ((0, 0), (d // 2, d - d // 2), (0, 0))
        rgb = np.pad(rgb, pad, mode="reflect") if min(h, w) > d // 2 + 1 else np.pad(rgb, pad, mode="edge")
    interp = cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp)


def center_crop(rgb: np.ndarray, size: int, fraction: float = 0.55) -> np.ndarray:
    """The central square ``fraction`` of the image resized to ``size``: the evaluation fallback when no face is
    found (facenet's LFW protocol does the same, so every pair still gets a score)."""
    h, w = rgb.shape[:2]
    side = int(min(h, w) * fraction)
    y, x = (h - side) // 2, (w - side) // 2
    return cv2.resize(rgb[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Quality:
    """Measured quality of one face; the gate compares these against ``quality_*`` settings."""

    face_px: float      # short side of the detection box, pixels
    det_prob: float     # MTCNN probability
    sharpness: float    # variance of the Laplacian of the aligned grey crop (higher = sharper)
    yaw: float          # |nose - eye midpoint| / eye distance along the eye line (0 = frontal)
    outside: float = 0.0          # fraction of the aligned crop that lies outside the photo (tight crops: large)
    preparation: str = "aligned"  # aligned | tight | given_aligned (see Pipeline.prepare)

    def score(self) -> float:
        """One number in [0, 1] for ranking templates; not a probability."""
        s = min(1.0, self.face_px / 112.0) * self.det_prob
        s *= min(1.0, self.sharpness / 100.0) ** 0.5
        return float(s * max(0.0, 1.0 - self.yaw))

    def as_dict(self) -> dict[str, float | str]:
        return {"face_px": round(self.face_px, 1), "det_prob": round(self.det_prob, 4),
                "sharpness": round(self.sharpness, 1), "yaw": round(self.yaw, 3), "score": round(self.score(), 4),
                "outside": round(self.outside, 3), "preparation": self.preparation}


def measure_quality(face: Face, aligned: Aligned, *, outside: float = 0.0, preparation: str = "aligned") -> Quality:
    grey = cv2.cvtColor(aligned.crop, cv2.COLOR_RGB2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    le, re, nose = aligned.landmarks[0], aligned.landmarks[1], aligned.landmarks[2]
    eye_vec = re - le
    eye_dist = float(np.linalg.norm(eye_vec)) or 1.0
    yaw = abs(float(np.dot(nose - (le + re) / 2, eye_vec / eye_dist))) / eye_dist
    return Quality(face_px=face.size, det_prob=face.prob, sharpness=sharpness, yaw=yaw, outside=outside,
                   preparation=preparation)


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


def save_crop(path: str, crop: np.ndarray) -> None:
    """Write an aligned crop losslessly (PNG), so re-embedding it later reproduces the original input exactly."""
    if not cv2.imwrite(path, cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)):
        raise IdsvcError("home_unwritable", f"could not write the crop {path}", path=path)


def read_crop(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise IdsvcError("crop_missing", f"could not read the crop {path}", path=path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """A crop aligned at one size, for a model of another: the template scales linearly, so this is exact."""
    if crop.shape[0] == size:
        return crop
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)
