"""Softmax cross-entropy over a linear classifier that the loss owns (as in pytorch-metric-learning's classifier
losses): the classifier exists only to shape the embedding and is dropped from the shipped checkpoint."""

from __future__ import annotations

import torch
from torch import nn


class SoftmaxLoss(nn.Module):
    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(dim, num_classes)
        self.last_logits: torch.Tensor | None = None

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """features (N, D), labels (N,) int64 → scalar mean cross-entropy; keeps the logits for accuracy."""
        logits = self.classifier(features.float())
        self.last_logits = logits.detach()
        return nn.functional.cross_entropy(logits, labels)
