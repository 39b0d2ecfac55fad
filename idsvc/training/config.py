"""What a training run is. The fields that change what is learned are recorded in every epoch checkpoint, so a
``--resume`` with a different recipe is refused instead of silently mixing two runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from idsvc.errors import IdsvcError

#: Fields that may differ between a run and its resume: where it runs, how long, how loudly.
RESUMABLE_CHANGES = frozenset({"resume", "epochs", "device", "max_steps", "lfw_dir", "name", "out"})
OPTIMIZERS = ("adamw", "sgd")


@dataclass
class TrainConfig:
    data_dir: Path
    out: Path
    arch: str = "inception_resnet_v1"
    init: Path | None = None
    freeze_through: str | None = None   # a stage name of the architecture; None = train everything
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3                     # new layers: classifier (and, from scratch, everything)
    lr_backbone: float = 1e-4            # pretrained layers when fine-tuning
    weight_decay: float = 5e-4
    optimizer: str = "adamw"             # or "sgd"
    center_lambda: float = 0.01          # λ: weight of the center loss
    center_alpha: float = 0.5            # α: centre update rate
    embedding_size: int = 128
    warmup_epochs: int = 1               # when fine-tuning, train only the classifier first
    flip: bool = True                    # horizontal flips (cached twice in frozen mode)
    min_per_identity: int = 2
    max_identities: int = 0              # 0 = all
    max_per_identity: int = 0            # 0 = all
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    lfw_dir: Path | None = None          # validate on LFW each epoch when given
    name: str = "idsvc-trained"
    fp16: bool = True
    max_steps: int = 0                   # stop after this many steps (tests, smoke runs); 0 = no limit

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def check(self) -> None:
        """Raises ``invalid_argument`` naming the option at fault (checked before any data is read)."""
        from idsvc.encoders import nets

        if self.arch not in nets.ARCHS:
            raise IdsvcError("invalid_argument", f"--arch must be one of {', '.join(nets.ARCHS)}, not {self.arch!r}")
        if self.optimizer not in OPTIMIZERS:
            raise IdsvcError("invalid_argument", f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
        for name, value, low in (("--epochs", self.epochs, 1), ("--batch-size", self.batch_size, 2)):
            if value < low:
                raise IdsvcError("invalid_argument", f"{name} must be at least {low}, not {value}")
        if self.center_lambda < 0 or self.lr <= 0 or self.lr_backbone < 0:
            raise IdsvcError("invalid_argument", "--lambda, --lr and --lr-backbone must not be negative")

    def differences(self, saved: dict[str, Any]) -> list[str]:
        """Recipe fields whose value differs from a checkpoint's saved config."""
        mine = self.as_dict()
        return sorted(k for k in mine if k not in RESUMABLE_CHANGES and k in saved and saved[k] != mine[k])
