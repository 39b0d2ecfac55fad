"""What every encoder kind is to the rest of idsvc: the ``EmbeddingModel`` protocol (a torch network, SFace through
ONNX Runtime, a fusion of encoders) and the card-derived properties they share."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from idsvc.encoders.checkpoint import model_version


class CardProperties:
    """Version, input size, dimension and threshold of any encoder kind, all read from its model card (the version is
    hashed once)."""

    card: dict[str, Any]

    @functools.cached_property
    def version(self) -> str:
        return model_version(self.card)

    @property
    def input_size(self) -> int:
        return int(self.card["preprocessing"]["input_size"])

    @property
    def dim(self) -> int:
        return int(self.card["embedding_size"])

    @property
    def threshold(self) -> float | None:
        return self.card.get("threshold")


class EmbeddingModel(Protocol):
    """What every encoder kind offers (a torch network, SFace through ONNX Runtime, a fusion of encoders): it takes
    (N, S, S, 3) uint8 crops at ``input_size`` — aligned on idsvc's template, or a face that filled its photo taken
    whole — with where their five landmarks lie ((N, 5, 2) crop pixels; None: on the template), and returns (N, dim)
    float32 embeddings with norm 1. An encoder with its own template (SFace) re-aligns each crop from its
    landmarks; one trained on idsvc's crops takes them as they are."""

    card: dict[str, Any]
    path: Path | None
    device: Any

    @property
    def version(self) -> str: ...

    @property
    def input_size(self) -> int: ...

    @property
    def dim(self) -> int: ...

    @property
    def threshold(self) -> float | None: ...

    def embed(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray: ...
