"""A home's face pipeline: the face reader (decode → detect → align) at the active encoder's input size, plus the
encoder — image → faces → aligned crops → embeddings, the one path enroll, search, verify, eval and train share."""

from __future__ import annotations

from typing import Any

import numpy as np

from idsvc.cancel import checkpoint
from idsvc.encoders.protocol import EmbeddingModel
from idsvc.errors import IdsvcError
from idsvc.faces.align import Aligned
from idsvc.faces.detect import Detector
from idsvc.faces.reader import FaceReader
from idsvc.settings import Settings


def detector_device(settings: Settings, encoder: EmbeddingModel | None) -> Any:
    """MTCNN runs where the encoder runs (``--device cuda``, or ``auto`` on a CUDA machine): detection on the CPU
    would leave the GPU waiting for it. A fusion's device reads like "cuda:0, cpu (onnxruntime)"."""
    import torch

    from idsvc.devices import resolve_device

    if encoder is None:
        return resolve_device(settings.device)
    return torch.device("cuda") if "cuda" in str(getattr(encoder, "device", "")) else torch.device("cpu")


class Pipeline(FaceReader):
    """The face reader with an encoder (or, without one, detection and crops alone). Created once per process:
    MTCNN and the encoder load slowly."""

    def __init__(self, settings: Settings, encoder: EmbeddingModel | None = None, detector: Detector | None = None, *,
                 crop_size: int | None = None) -> None:
        super().__init__(settings, detector or Detector(settings, detector_device(settings, encoder)),
                         crop_size=encoder.input_size if encoder else (crop_size or 160))
        self.encoder = encoder

    @property
    def recipe(self) -> str:
        """What, besides the model version, decides the crop a photo becomes (keys the evaluation cache)."""
        from idsvc.encoders.int8 import numerics
        from idsvc.faces.detect import PAD_FRACTION

        s = self.settings
        int8 = "-int8" if numerics(self.encoder) == "int8" else ""  # other vectors
        return (f"pad{PAD_FRACTION}-tight{s.tight_crop_outside}-{s.tight_crop_mode}-yunet-settled-zoom1.2-"
                f"sfacewarp2-whole-fallback{int8}")

    def embed(self, aligned: list[Aligned]) -> np.ndarray:
        """Crops (with their landmarks) → (N, D) float32 L2-normalised."""
        if not aligned:
            return self.embed_arrays(np.zeros((0, self.crop_size, self.crop_size, 3), np.uint8))
        return self.embed_arrays(np.stack([a.crop for a in aligned]), np.stack([a.landmarks for a in aligned]))

    def embed_arrays(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 crops with their (N, 5, 2) landmarks (None: on the template) → (N, D) float32
        L2-normalised."""
        checkpoint()
        if self.encoder is None:
            raise IdsvcError("internal", "this pipeline was built without an encoder")
        return self.encoder.embed(crops, landmarks)
