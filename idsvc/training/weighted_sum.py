"""A weighted sum of losses: ``L = Σ_k w_k · L_k(features, labels)``. Softmax + λ·center is
``WeightedSum({"softmax": (1, SoftmaxLoss), "center": (λ, CenterLoss)})``; each part is reported by name."""

from __future__ import annotations

import torch
from torch import nn


class WeightedSum(nn.Module):
    def __init__(self, terms: dict[str, tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.weights = {name: float(w) for name, (w, _) in terms.items()}
        self.terms = nn.ModuleDict({name: loss for name, (_, loss) in terms.items()})

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total, {name: unweighted part}); the total is computed in float32 whatever the features' dtype."""
        parts = {name: loss(features, labels).float() for name, loss in self.terms.items()}
        total = torch.zeros((), device=features.device)
        for name, value in parts.items():
            total = total + self.weights[name] * value
        return total, parts
