"""Which torch device a setting means: ``cpu``, ``cuda``, or ``auto`` (CUDA when there is one). The detector and the
encoders both place their networks by it."""

from __future__ import annotations

import torch

from idsvc.errors import IdsvcError


def resolve_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise IdsvcError("invalid_argument", "--device cuda: no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")
