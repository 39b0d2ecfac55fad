"""Per-epoch training state, so a killed run resumes where it stopped. A resume whose recipe differs from the
checkpoint's (another data folder, λ, learning rate, architecture…) is refused: the result would be neither run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from idsvc.errors import IdsvcError
from idsvc.training.config import TrainConfig


def checkpoint_dir(cfg: TrainConfig) -> Path:
    return cfg.out.parent / (cfg.out.stem + ".checkpoints")


def save_epoch(cfg: TrainConfig, epoch: int, state: dict[str, Any]) -> Path:
    d = checkpoint_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"epoch-{epoch:03d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({**state, "epoch": epoch, "config": cfg.as_dict()}, tmp)
    tmp.replace(path)
    return path


def load_latest(cfg: TrainConfig) -> tuple[dict[str, Any], Path]:
    """The last epoch's state. Raises ``file_not_found`` (nothing to resume) and ``invalid_argument`` (the
    checkpoint was made with another recipe)."""
    latest = sorted(checkpoint_dir(cfg).glob("epoch-*.pt"))
    if not latest:
        raise IdsvcError("file_not_found", f"--resume: no checkpoints in {checkpoint_dir(cfg)}")
    # The run's own checkpoints, written by save() into its output folder (optimizer state and RNG states need full
    # unpickling); never a file from elsewhere.
    state = torch.load(latest[-1], weights_only=False)  # nosec B614
    changed = cfg.differences(state.get("config", {}))
    if changed:
        saved = state["config"]
        raise IdsvcError("invalid_argument", "--resume with a changed recipe: " + ", ".join(
            f"{k} {saved[k]!r} → {cfg.as_dict()[k]!r}" for k in changed), changed=changed)
    return state, latest[-1]
