"""Image → faces → aligned crops → embeddings: the one path every workflow (enroll, search, eval, train) uses, so
that training, evaluation and serving see identically prepared faces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idsvc.align import Aligned, Quality, align, center_crop, measure_quality, quality_problems
from idsvc.detect import Detector, Face
from idsvc.encoder import Encoder
from idsvc.errors import IdsvcError
from idsvc.imageio import LoadedImage, decode_image, load_image
from idsvc.settings import Settings

#: A second face at least this fraction of the chosen face's size (and confidently detected) makes a photo ambiguous.
COMPETING_FACE_RATIO = 0.5


@dataclass(frozen=True)
class FaceCrop:
    face: Face
    aligned: Aligned
    quality: Quality
    faces_in_image: int = 1


class Pipeline:
    """Detector + aligner (+ encoder when given). Created once per process: MTCNN and the encoder load slowly."""

    def __init__(self, settings: Settings, encoder: Encoder | None = None, detector: Detector | None = None, *,
                 crop_size: int | None = None) -> None:
        self.settings = settings
        self.encoder = encoder
        self.detector = detector or Detector(settings)
        self.crop_size = encoder.input_size if encoder else (crop_size or 160)

    def load(self, path: str | Path) -> LoadedImage:
        s = self.settings
        return load_image(path, max_pixels=s.max_image_pixels, min_side=s.min_image_side)

    def decode(self, data: bytes, source: str) -> LoadedImage:
        s = self.settings
        return decode_image(data, source, max_pixels=s.max_image_pixels, min_side=s.min_image_side)

    def crop(self, image: LoadedImage, face: Face) -> FaceCrop:
        aligned = align(image.pixels, face.landmarks, self.crop_size)
        return FaceCrop(face=face, aligned=aligned, quality=measure_quality(face, aligned))

    def faces(self, image: LoadedImage) -> list[FaceCrop]:
        """Every face in the image, best (large and central) first."""
        return [self.crop(image, f) for f in self.detector.detect(image.pixels)]

    def quality_reasons(self, fc: FaceCrop) -> list[str]:
        s = self.settings
        return quality_problems(fc.quality, min_face_px=s.quality_min_face_px, min_det_prob=s.quality_min_det_prob,
                                min_sharpness=s.quality_min_sharpness, max_yaw=s.quality_max_yaw)

    def one_face(self, image: LoadedImage, *, strict: bool = True) -> FaceCrop:
        """The face a photo is about: the large-and-central one.

        ``strict`` (enrollment) also refuses a photo with a rival face of similar size and one failing the quality
        gate, since a template must be unambiguous; probes (search, verify) just take the main face.
        Raises ``no_face``, and when strict ``multiple_faces`` or ``low_quality``.
        """
        faces = self.detector.detect(image.pixels)
        if not faces:
            raise IdsvcError("no_face", f"{image.source}: no face found", path=image.source)
        best = faces[0]
        rivals = [f for f in faces[1:]
                  if f.prob >= self.settings.quality_min_det_prob and f.size >= COMPETING_FACE_RATIO * best.size]
        if rivals and strict:
            raise IdsvcError("multiple_faces", f"{image.source}: {len(rivals) + 1} faces found, expected one",
                             path=image.source, faces=len(rivals) + 1)
        fc = self.crop(image, best)
        fc = FaceCrop(fc.face, fc.aligned, fc.quality, faces_in_image=len(faces))
        if strict:
            reasons = self.quality_reasons(fc)
            if reasons:
                raise IdsvcError("low_quality", f"{image.source}: {'; '.join(reasons)}", path=image.source,
                                 reasons=reasons, quality=fc.quality.as_dict())
        return fc

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, S, S, 3) uint8 → (N, D) float32 L2-normalised."""
        if self.encoder is None:
            raise IdsvcError("internal", "this pipeline was built without an encoder")
        return self.encoder.embed(np.stack(crops) if crops else np.zeros((0, self.crop_size, self.crop_size, 3),
                                                                           np.uint8))

    def eval_crops(self, paths: list[Path], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Aligned crops for evaluation/training: the chosen face, or a centre crop where none is found.

        Returns ((N, S, S, 3) uint8, (N,) bool found). Same-shape photos share MTCNN passes.
        """
        crops: list[np.ndarray] = []
        found: list[bool] = []
        for i in range(0, len(paths), batch):
            images = [self.load(p) for p in paths[i:i + batch]]
            for image, faces in zip(images, self.detector.detect_batch([im.pixels for im in images])):
                if faces:
                    crops.append(align(image.pixels, faces[0].landmarks, self.crop_size).crop)
                    found.append(True)
                else:
                    crops.append(center_crop(image.pixels, self.crop_size))
                    found.append(False)
        return np.stack(crops), np.array(found, dtype=bool)
