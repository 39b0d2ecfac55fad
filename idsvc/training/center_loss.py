"""Center loss (Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition", ECCV 2016).

    L_C = 1/2 · Σ_i ‖x_i − c_{y_i}‖²        (here averaged over the batch, as in the authors' code)

The centres are not learned by back-propagation. After each step they move toward the batch features of their class
with the paper's rule (its Eq. 4):

    Δc_j = Σ_i δ(y_i = j) · (c_j − x_i) / (1 + Σ_i δ(y_i = j))
    c_j ← c_j − α · Δc_j

so a class seen in the batch moves a fraction α of the way toward its batch mean (damped by the count), and unseen
classes stay put. The total loss is L_softmax + λ · L_C; λ lives in the training loop's weighted sum, α here.
"""

from __future__ import annotations

import torch
from torch import nn

from idsvc.errors import IdsvcError


class CenterLoss(nn.Module):
    """centres: (num_classes, dim) float32 buffer (saved in checkpoints, not a parameter)."""

    centers: torch.Tensor

    def __init__(self, num_classes: int, dim: int, alpha: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < alpha <= 1.0:
            raise IdsvcError("invalid_argument", f"--alpha must be in (0, 1], not {alpha}")
        self.alpha = alpha
        self.register_buffer("centers", torch.zeros(num_classes, dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """features (N, D), labels (N,) int64 → scalar: 1/2 · mean_i ‖x_i − c_{y_i}‖²."""
        diff = features.float() - self.centers.index_select(0, labels)
        return 0.5 * diff.pow(2).sum(dim=1).mean()

    @torch.no_grad()
    def update_centers(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """The paper's update (Eq. 4) with rate α; call once per step, after the optimiser step."""
        feats = features.detach().float()
        delta = torch.zeros_like(self.centers)
        delta.index_add_(0, labels, self.centers.index_select(0, labels) - feats)
        counts = torch.zeros(self.centers.shape[0], device=feats.device)
        counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float32))
        self.centers -= self.alpha * delta / (1.0 + counts).unsqueeze(1)

    @torch.no_grad()
    def init_centers(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Start each centre at its class mean (when fine-tuning, features are already meaningful)."""
        sums = torch.zeros_like(self.centers)
        sums.index_add_(0, labels, features.float())
        counts = torch.zeros(self.centers.shape[0], device=features.device)
        counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float32))
        seen = counts > 0
        self.centers[seen] = sums[seen] / counts[seen].unsqueeze(1)
