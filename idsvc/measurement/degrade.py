"""Real photos degraded to model failures our benchmarks do not cover: a cut tighter than any template, greyscale
under one point light, a dark noisy exposure, blur, JPEG, small faces, sunglasses and mask bands. Each transform takes
a photo, its five landmarks (found on the loose original) and a seeded generator, and returns the degraded photo with
the 2×3 matrix that carries the photo's points into it — so where the face now is, and where its landmarks should be
found, is known. bench/proxies.py builds the proxy family from these; the tests degrade real photos with them.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

#: (photo, its landmarks, a seeded generator) → (degraded photo, the 2×3 matrix taking the photo's points to it).
Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def photometric(fn: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]) -> Transform:
    """A transform that moves no pixel."""
    return lambda rgb, lm, rng: (fn(rgb, lm, rng), IDENTITY)


# -- geometry of a face from its five landmarks ----------------------------------------------------------------------
def face_frame(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(eye centre, mouth centre, eye-to-mouth distance d, roll in radians)."""
    eyes, mouth = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2
    roll = float(np.arctan2(lm[1][1] - lm[0][1], lm[1][0] - lm[0][0]))
    return eyes, mouth, float(np.linalg.norm(mouth - eyes)), roll


def tight_cut(rgb: np.ndarray, lm: np.ndarray, rng: np.random.Generator,
              size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A cut from the eyebrows to the chin at ``size`` (width, height), eyes level (±4°), its edges jittered: the face
    is wider than the frame."""
    eyes, mouth, d, roll = face_frame(lm)
    top, bottom = rng.uniform(0.30, 0.45), rng.uniform(0.55, 0.80)  # eyebrows above the eyes, chin below the mouth
    height = (1 + top + bottom) * d
    centre = (eyes + mouth) / 2 + rng.uniform(-0.04, 0.04, 2) * d
    up = (mouth - eyes) / max(d, 1e-6)  # the face's own downward axis
    centre = centre + up * (bottom - top) * d / 2
    angle = roll + np.deg2rad(rng.uniform(-4, 4))
    scale = size[1] / height
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    matrix = np.array([[c, s, 0.0], [-s, c, 0.0]])
    matrix[:, 2] = np.array(size, float) / 2 - matrix[:, :2] @ centre
    return cv2.warpAffine(rgb, matrix, size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101), matrix


def point_light(grey: np.ndarray, rng: np.random.Generator,
                azimuth_degrees: tuple[float, float] = (25, 65)) -> np.ndarray:
    """One point light ``azimuth_degrees`` (25–65°) to one side and 0–30° above, on a face taken as a curved surface
    across the frame (Lambert's law), with a little ambient light: the far half of the face falls into shadow."""
    h, w = grey.shape
    azimuth = np.deg2rad(rng.uniform(*azimuth_degrees)) * rng.choice([-1, 1])
    elevation = np.deg2rad(rng.uniform(0, 30))
    x = np.clip((np.arange(w) - w / 2) / (0.55 * w), -0.999, 0.999)
    y = np.clip((np.arange(h) - h / 2) / (0.75 * h), -0.999, 0.999)
    phi, psi = np.arcsin(x)[None, :], -np.arcsin(y)[:, None]
    normal = np.stack(np.broadcast_arrays(np.sin(phi) * np.cos(psi), np.sin(psi), np.cos(phi) * np.cos(psi)))
    light = np.array([np.sin(azimuth) * np.cos(elevation), np.sin(elevation), np.cos(azimuth) * np.cos(elevation)])
    ambient = rng.uniform(0.03, 0.12)
    gain = ambient + (1 - ambient) * np.clip(np.tensordot(light, normal, 1), 0, None)
    lit = grey.astype(np.float32) * gain
    lit *= 235 / max(np.percentile(lit, 97), 1.0)  # the camera exposes for the lit side
    return np.clip(lit, 0, 255).astype(np.uint8)


def grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def low_light(rgb: np.ndarray, _lm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dark exposure (8–20% of the light) captured in 8 bits with shot and read noise, then brightened back."""
    exposure = rng.uniform(0.08, 0.20)
    dark = rgb.astype(np.float32) * exposure
    dark += rng.normal(0, 1, dark.shape) * np.sqrt(np.maximum(dark, 0) * 0.6 + rng.uniform(1.5, 3.0) ** 2)
    captured = np.clip(np.round(dark), 0, 255)
    return np.clip(captured / exposure, 0, 255).astype(np.uint8)


def blur(rgb: np.ndarray, _lm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:  # motion: a line of 7-15 px at any angle
        length = int(rng.integers(7, 16))
        kernel: np.ndarray = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1
        rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
    else:  # defocus: a disk of radius 2.5-4.5 px
        r = rng.uniform(2.5, 4.5)
        n = int(np.ceil(r)) * 2 + 1
        yy, xx = np.mgrid[:n, :n] - n // 2
        kernel = (xx ** 2 + yy ** 2 <= r ** 2).astype(np.float32)
    return cv2.filter2D(rgb, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT_101)


def small(rgb: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The photo scaled so the eyes are 24–40 px apart (never enlarged)."""
    eye_dist = float(np.linalg.norm(lm[1] - lm[0]))
    scale = min(1.0, rng.uniform(24, 40) / max(eye_dist, 1.0))
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    matrix = np.array([[size[0] / w, 0.0, 0.0], [0.0, size[1] / h, 0.0]])
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), matrix


def band(rgb: np.ndarray, corners: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = rgb.copy()
    fill = np.clip(colour + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    inside = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillConvexPoly(inside, np.round(corners).astype(np.int32), 1)
    mask = cv2.GaussianBlur(inside.astype(np.float32), (5, 5), 0)[..., None]
    return (out * (1 - mask) + fill * mask).astype(np.uint8)


def _rect(centre: np.ndarray, half_w: float, half_h: float, roll: float) -> np.ndarray:
    c, s = np.cos(roll), np.sin(roll)
    pts = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
    return pts @ np.array([[c, s], [-s, c]]) + centre


def sunglasses(rgb: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    eyes, _, d, roll = face_frame(lm)
    eye_dist = float(np.linalg.norm(lm[1] - lm[0]))
    corners = _rect(eyes, eye_dist * rng.uniform(0.95, 1.15), d * rng.uniform(0.22, 0.32), roll)
    return band(rgb, corners, np.array([rng.uniform(10, 45)] * 3), rng)


def mask(rgb: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    _, mouth, d, roll = face_frame(lm)
    eye_dist = float(np.linalg.norm(lm[1] - lm[0]))
    top, bottom = lm[2][1] - 0.25 * d, mouth[1] + rng.uniform(0.7, 1.0) * d
    centre = np.array([(lm[2][0] + mouth[0]) / 2, (top + bottom) / 2])
    colour = np.array(rng.choice([[225, 230, 235], [140, 180, 215], [60, 60, 70]]), float)
    return band(rgb, _rect(centre, eye_dist * rng.uniform(1.15, 1.35), (bottom - top) / 2, roll), colour, rng)


def jpeg20(rgb: np.ndarray, _lm: np.ndarray, _rng: np.random.Generator) -> np.ndarray:
    _, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 20])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:  # OpenCV failed to decode what it has just encoded
        raise RuntimeError("JPEG round trip failed")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def tight_grey_light(rgb: np.ndarray, lm: np.ndarray, rng: np.random.Generator,
                     azimuth_degrees: tuple[float, float] = (25, 65)) -> tuple[np.ndarray, np.ndarray]:
    cut, matrix = tight_cut(rgb, lm, rng, (168, 192))
    return point_light(grey(cut), rng, azimuth_degrees), matrix
