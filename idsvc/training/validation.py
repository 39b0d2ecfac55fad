"""What each epoch reports: how tight the classes are (mean distance of training embeddings to their class mean)
and, when an LFW folder is given, the LFW protocol on its pairs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from idsvc.encoders.torch_encoder import preprocess
from idsvc.measurement.far import threshold_at_far
from idsvc.measurement.verification import tar_at_far, verification_report
from idsvc.training.prefix import forward_from

#: LFW data for validation: (crops, (P, 2) photo indices of each pair, (P,) same, (P,) fold).
LfwData = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def embed(model: nn.Module, feats: torch.Tensor | None, crops: np.ndarray, stage: str | None, norm: str,
          device: torch.device) -> torch.Tensor:
    """(N, D) float32 L2-normalised embeddings, from cached prefix features when there are some."""
    model.eval()
    with torch.inference_mode():
        if feats is not None:
            return nn.functional.normalize(forward_from(model, feats, stage, device).float(), dim=1).cpu()
        outs = [model(preprocess(crops[i:i + 64], norm).to(device)) for i in range(0, len(crops), 64)]
        return nn.functional.normalize(torch.cat(outs).float(), dim=1).cpu()


def intra_class_distance(model: nn.Module, feats: torch.Tensor | None, crops: np.ndarray, labels: np.ndarray,
                         stage: str | None, norm: str, device: torch.device, flip: bool, limit: int = 2000) -> float:
    """Mean distance of (normalised) training embeddings to their class mean, on a fixed subset."""
    idx = np.arange(min(limit, len(labels)))
    f = None if feats is None else (feats[idx, 0] if flip else feats[idx])
    emb = embed(model, f, crops[idx], stage, norm, device).numpy()
    lab = labels[idx]
    dists = [np.linalg.norm(emb[lab == c] - emb[lab == c].mean(0), axis=1).mean()
             for c in np.unique(lab) if (lab == c).sum() > 1]
    return float(np.mean(dists)) if dists else 0.0


def validate_lfw(model: nn.Module, lfw: LfwData, lfw_feats: torch.Tensor | None, stage: str | None, norm: str,
                 device: torch.device) -> dict[str, Any]:
    crops, idx, same, folds = lfw
    emb = embed(model, lfw_feats, crops, stage, norm, device).numpy()
    scores = (emb[idx[:, 0]] * emb[idx[:, 1]]).sum(1)
    rep = verification_report(scores, same, folds)
    return {"accuracy": rep["accuracy"], "accuracy_std": rep["accuracy_std"], "auc": rep["auc"], "eer": rep["eer"],
            "tar_at_far_1e-3": tar_at_far(scores, same, 1e-3), "threshold_best_accuracy": rep["threshold"],
            "threshold_far_1e-3": threshold_at_far(scores, same, 1e-3, 0.8)}
