"""The frozen-prefix cache. Fine-tuning a large network on a CPU is affordable when its early stages are frozen and
their output computed once: an epoch then costs seconds to minutes instead of most of an hour. The cache is keyed by
(init weights, stage, data) and lives under ``HOME/cache/train``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from idsvc.encoders.torch_encoder import preprocess


def freeze_through(model: Any, stage: str) -> None:
    """Freeze every parameter, then unfreeze the stages after ``stage`` and the head."""
    for p in model.parameters():
        p.requires_grad_(False)
    for name in model.STAGES[model.STAGES.index(stage) + 1:]:
        for p in model.stage(name).parameters():
            p.requires_grad_(True)
    for p in model.head_parameters():
        p.requires_grad_(True)


def compute(model: Any, crops: np.ndarray, stage: str, norm: str, device: torch.device, flip: bool,
            batch: int = 64) -> torch.Tensor:
    """Output of the frozen stages for every crop (and its mirror image, on a new dim 1), float16 on the CPU."""
    outs = []
    model.eval()
    with torch.no_grad():  # not inference_mode: these tensors feed training, which saves them for backward
        for i in range(0, len(crops), batch):
            x = preprocess(crops[i:i + batch], norm).to(device)
            if flip:
                x = torch.cat([x, x.flip(3)])
            outs.append(model.forward_until(x, stage).half().cpu())
    return torch.cat(outs) if not flip else _interleave(outs)


def _interleave(outs: list[torch.Tensor]) -> torch.Tensor:
    """Reorder per-batch [originals, mirrors] into ([all originals], [all mirrors]) stacked on a new dim 1."""
    origs, mirrors = [], []
    for o in outs:
        h = len(o) // 2
        origs.append(o[:h])
        mirrors.append(o[h:])
    return torch.stack([torch.cat(origs), torch.cat(mirrors)], dim=1)


def cached(path: Path, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The tensor saved at ``path``, or ``make()`` saved there first."""
    if path.is_file():
        return torch.load(path, weights_only=True)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(value, path)
    return value


def forward_from(model: nn.Module, x: torch.Tensor, stage: str | None, device: torch.device,
                 batch: int = 256) -> torch.Tensor:
    """The rest of the network after ``stage`` over cached features (or whole crops when ``stage`` is None)."""
    outs = []
    for i in range(0, len(x), batch):
        outs.append(model.forward_from(x[i:i + batch].to(device).float(), stage))  # type: ignore[operator]
    return torch.cat(outs)
