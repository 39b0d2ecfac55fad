"""Encoder architectures. Each returns raw (N, D) bottleneck features; ``encoder.py`` L2-normalises them.

Training wants the raw features: center loss (Wen et al.) pulls unnormalised features toward their class centres.
"""

from __future__ import annotations

import torch
from torch import nn

from idsvc.errors import IdsvcError

ARCHS = ("inception_resnet_v1", "compact")
INPUT_SIZE = {"inception_resnet_v1": 160, "compact": 112}


class StagedNet(nn.Module):
    """A trunk of named stages plus a head. Training freezes a prefix of stages and caches its output once
    (``forward_until``), then trains the rest (``forward_from``)."""

    STAGES: tuple[str, ...] = ()

    def stage(self, name: str) -> nn.Module:
        return getattr(self, name)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def forward_until(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """Run the stages up to and including ``stage``."""
        for name in self.STAGES:
            x = self.stage(name)(x)
            if name == stage:
                return x
        raise IdsvcError("invalid_argument", f"unknown stage {stage!r}; choose from {', '.join(self.STAGES)}")

    def forward_from(self, x: torch.Tensor, after: str | None) -> torch.Tensor:
        """Run the stages after ``after`` (None = from the input), then the head."""
        start = 0 if after is None else self.STAGES.index(after) + 1
        for name in self.STAGES[start:]:
            x = self.stage(name)(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(x, None)


class InceptionResnetV1Net(StagedNet):
    """facenet-pytorch's Inception-ResNet-v1 with davidsandberg/facenet's 128-d bottleneck + BatchNorm.

    ``STAGES`` are the trunk's modules in order; freezing through ``repeat_2`` or ``repeat_3`` and caching turns a
    2-core CPU epoch of most of an hour into minutes.
    """

    STAGES = ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
              "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8")

    def __init__(self, embedding_size: int = 128, dropout: float = 0.2) -> None:
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        trunk = InceptionResnetV1(pretrained=None, classify=False, dropout_prob=dropout)
        trunk.last_linear = nn.Linear(1792, embedding_size, bias=False)
        trunk.last_bn = nn.BatchNorm1d(embedding_size, eps=0.001, momentum=0.1, affine=True)
        self.trunk = trunk
        self.embedding_size = embedding_size

    def stage(self, name: str) -> nn.Module:
        return getattr(self.trunk, name)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        t = self.trunk
        x = t.dropout(t.avgpool_1a(x)).flatten(1)
        return t.last_bn(t.last_linear(x))

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.trunk.last_linear.parameters(), *self.trunk.last_bn.parameters()]


def _conv_bn(cin: int, cout: int, k: int, s: int, groups: int = 1, act: bool = True,
             pad: int | None = None) -> nn.Sequential:
    padding = k // 2 if pad is None else pad
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, padding, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.PReLU(cout))
    return nn.Sequential(*layers)


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 2) -> None:
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(_conv_bn(cin, mid, 1, 1), _conv_bn(mid, mid, 3, stride, groups=mid),
                                  _conv_bn(mid, cout, 1, 1, act=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class CompactNet(StagedNet):
    """A MobileFaceNet-style network for 112×112 crops (0.7M parameters): small enough to train on a CPU."""

    STAGES = ("stem", "stage1", "stage2", "stage3", "stage4")

    def __init__(self, embedding_size: int = 128, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 64, 3, 2), _conv_bn(64, 64, 3, 1, groups=64))          # 56
        self.stage1 = nn.Sequential(_InvertedResidual(64, 64, 2), *[_InvertedResidual(64, 64, 1) for _ in range(3)])
        self.stage2 = nn.Sequential(_InvertedResidual(64, 128, 2), *[_InvertedResidual(128, 128, 1) for _ in range(4)])
        self.stage3 = nn.Sequential(_InvertedResidual(128, 128, 2), _InvertedResidual(128, 128, 1))  # 7
        self.stage4 = _conv_bn(128, 512, 1, 1)
        # global depthwise conv: keeps where, not just what
        self.gdc = _conv_bn(512, 512, 7, 1, groups=512, act=False, pad=0)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(512, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)
        self.embedding_size = embedding_size

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gdc(x).flatten(1)
        return self.bn(self.linear(self.dropout(x)))

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.gdc.parameters(), *self.linear.parameters(), *self.bn.parameters()]


def build(arch: str, embedding_size: int = 128) -> StagedNet:
    if arch == "inception_resnet_v1":
        return InceptionResnetV1Net(embedding_size)
    if arch == "compact":
        return CompactNet(embedding_size)
    raise IdsvcError("invalid_argument", f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
