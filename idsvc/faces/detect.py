"""Face detection with facenet-pytorch's MTCNN (its weights ship inside the wheel, so this works offline); the
cascade itself runs in ``idsvc.faces.mtcnn``, which gives the same faces faster.

MTCNN gives boxes, probabilities and five landmarks; alignment is ``align.py``'s job. Large images are downscaled for
detection and boxes mapped back, so alignment still samples the full-resolution pixels.

MTCNN's proposal network looks for faces with some context around them, so it misses a face that fills the whole
frame (ID photos, crops exported by other systems). A photo where nothing is found is tried once more with a black
border of ``PAD_FRACTION`` of its longer side; faces found so are mapped back and marked ``padded``. Where it does
find such a face, it places the landmarks badly (on LFW-tight, 3.9 px mean error at 112 px, against 1.9 px on a
bordered copy), so ``redetect_bordered`` gives the pipeline the landmarks of the bordered copy.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from idsvc.faces.face import Face, center_weighted_score, iou
from idsvc.faces.mtcnn import detect_faces, onet_points
from idsvc.landmarks import TEMPLATE_160, least_squares_similarity
from idsvc.settings import Settings


class Detector:
    """MTCNN behind a small interface: ``detect(rgb)`` → faces, best first by ``center_weighted_score``."""

    def __init__(self, settings: Settings, device: torch.device | None = None) -> None:
        from facenet_pytorch import MTCNN

        self.max_side = settings.detect_max_side
        self.device = device or torch.device("cpu")
        self.min_face = settings.det_min_face_size  # a shorter side than this gives MTCNN an empty image pyramid
        self._mtcnn = MTCNN(
            min_face_size=settings.det_min_face_size,
            thresholds=list(settings.det_thresholds),
            keep_all=True,
            post_process=False,
            device=self.device,
        )
        # MTCNN's stages run by idsvc.faces.mtcnn (same weights and box arithmetic, about twice as fast on a CPU).
        nets = (self._mtcnn.pnet, self._mtcnn.rnet, self._mtcnn.onet)
        if self.device.type == "cpu" and settings.cpu_runtime != "torch":  # "auto", "onnxruntime", "onnxruntime-int8"
            from idsvc.faces.mtcnn import cpu_networks

            nets = cpu_networks(self._mtcnn, settings.model_cache_dir)
        self._nets = nets
        self._thresholds = settings.det_thresholds

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """rgb: (H, W, 3) uint8. Returns every face, best first."""
        return self.detect_batch([rgb])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Detect in several images; images of one shape share MTCNN passes (LFW's 250×250 photos, for example).
        Images with no face are tried again with a border (see the module's docstring)."""
        results = self._detect(images)
        misses = [i for i, faces in enumerate(results) if not faces]
        if misses:
            for i, faces in zip(misses, self._detect([images[i] for i in misses], PAD_FRACTION)):
                results[i] = sorted(faces, key=lambda f: center_weighted_score(f, images[i].shape), reverse=True)
        return results

    def redetect_bordered(self, rgb: np.ndarray, face: Face) -> Face:
        """``face`` with box and landmarks found again on a copy of the photo with a black border (``padded``);
        ``face`` itself when that finds nothing overlapping it."""
        moved = self._detect([rgb], PAD_FRACTION)[0]
        best = max(moved, key=lambda f: iou(f.box, face.box), default=None)
        return best if best is not None and iou(best.box, face.box) >= 0.5 else face

    def refine(self, rgb: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float]:
        """(five points, O-Net's face probability): MTCNN's last stage alone on the box MTCNN would draw around a
        face with roughly these ``points`` (another detector's), on a copy of the photo with a black border, and on
        a greyscale photo with its contrast equalised (CLAHE) first.

        Why: on a face that fills the frame MTCNN's first two stages, which look for a whole face with context,
        place the box badly or not at all, and the points follow the box; given a good box, its third stage puts
        them where it would on the loose photo. On the CelebA proxies (``.scratch``-built, bench/proxies.py) the
        worst of the five points lay a median 0.21 eye distances (tight-112) and 0.15 (tight-168x192) from MTCNN's
        on the loose photo with YuNet's points, 0.06 and 0.07 refined; greyscale half-lit tight cuts 0.18, 0.14
        refined and 0.11 equalised."""
        image = rgb
        if rgb.ndim == 3 and (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            lightness = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(np.ascontiguousarray(rgb[..., 0]))
            image = np.repeat(lightness[..., None], 3, axis=2)
        p = round(max(rgb.shape[:2]) * REFINE_PAD)
        image = np.pad(image, ((p, p), (p, p), (0, 0)))
        m = least_squares_similarity(np.asarray(points, np.float64) + p, TEMPLATE_160)
        scale = float(np.hypot(m[0, 0], m[0, 1]))
        centre = (m[:, :2] / scale).T @ (MTCNN_BOX[:2] - m[:, 2]) / scale
        half = MTCNN_BOX[2:] / scale / 2
        with torch.inference_mode():
            found, prob = onet_points(image, np.r_[centre - half, centre + half], self._nets[2], device=self.device)
        return found - p, prob

    def _detect(self, images: list[np.ndarray], pad_fraction: float = 0.0) -> list[list[Face]]:
        """Faces in image coordinates. With ``pad_fraction``, each image is first downscaled so that it fits
        ``max_side`` *with* its border, then given the border: a large photo never grows in memory. An image whose
        shorter side (as detected) is below MTCNN's smallest face cannot hold one (a 20000×32 strip), so it is not
        run through MTCNN, which would fail on it."""
        results: list[list[Face]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        scaled: list[np.ndarray] = []
        scales: list[float] = []
        pads: list[int] = []
        for i, img in enumerate(images):
            small, scale = _downscale(img, self.max_side / (1 + 2 * pad_fraction))
            p = round(max(small.shape[:2]) * pad_fraction)
            if p:
                small = np.pad(small, ((p, p), (p, p), (0, 0)))
            scaled.append(small)
            scales.append(scale)
            pads.append(p)
            if min(small.shape[:2]) >= self.min_face:
                groups.setdefault(small.shape, []).append(i)
        for idxs in groups.values():
            with torch.inference_mode():
                detected = detect_faces(np.stack([scaled[i] for i in idxs]), self._nets, min_face=self.min_face,
                                        thresholds=self._thresholds, device=self.device)
            for i, (boxes, probs, points) in zip(idxs, detected):
                s, p = scales[i], pads[i]
                faces = [
                    Face(box=((float(b[0]) - p) / s, (float(b[1]) - p) / s, (float(b[2]) - p) / s,
                              (float(b[3]) - p) / s), prob=float(pr),
                         landmarks=(np.asarray(pt, dtype=np.float32) - p) / s, padded=bool(p))
                    for b, pr, pt in zip(boxes, probs, points)
                ]
                faces.sort(key=lambda f: center_weighted_score(f, images[i].shape), reverse=True)
                results[i] = faces
        return results


#: The border given to a photo in which no face was found, as a fraction of its longer side.
PAD_FRACTION = 0.25
#: The border ``refine`` gives a photo: the box around a face wider than the frame reaches far outside it.
REFINE_PAD = 0.5
#: MTCNN's box around a face, on idsvc's 160-px template (centre x, y, width, height; median over 300 CelebA photos:
#: the box in each photo taken onto the template by the similarity that aligns its five points).
MTCNN_BOX = np.array([79.1, 79.0, 100.3, 135.5])


def _downscale(img: np.ndarray, max_side: float) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return img, 1.0
    import cv2

    small = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, scale
