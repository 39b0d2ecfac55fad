"""Alignment: a similarity transform of the five landmarks onto a canonical template (``idsvc.landmarks``).

The template is the mean landmark layout of the framing the FaceNet weights were trained on (MTCNN box plus a 32 px
margin on 250 px photos, resized to 160 px), measured on 314 CelebA photos and made left-right symmetric. Aligning
to it keeps the pretrained model's framing while removing in-plane rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from idsvc.errors import IdsvcError
from idsvc.landmarks import TEMPLATE_160, similarity, template

BORDERS = {"black": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}


@dataclass(frozen=True)
class Aligned:
    """crop: (size, size, 3) uint8 RGB; landmarks: (5, 2) in crop coordinates."""

    crop: np.ndarray
    landmarks: np.ndarray


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


def save_crop(path: str, crop: np.ndarray) -> None:
    """Write an aligned crop losslessly (PNG), so re-embedding it later reproduces the original input exactly."""
    if not cv2.imwrite(path, cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)):
        raise IdsvcError("home_unwritable", f"could not write the crop {path}", path=path)


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """A crop aligned at one size, for a model of another: the template scales linearly, so this is exact."""
    if crop.shape[0] == size:
        return crop
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)
