"""1:1 thresholds at a target false accept rate (FAR per comparison), chosen so that the true FAR stays at or below
the target with a stated confidence (one-sided Clopper-Pearson bound on the impostor pairs), and the calibration
summary built on them. A threshold is a property of a model *and* of the population it serves, so it is stored per
model version with the hash of the data that produced it.

Fold logic follows LFW: a threshold is chosen on nine folds and measured on the tenth, so the reported spread says
how well it transfers to unseen pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from idsvc.errors import IdsvcError
from idsvc.measurement.verification import best_accuracy_threshold, eer, kfold_accuracy, rates, tar_at_far

TARGET_FARS = (1e-2, 1e-3, 1e-4)
#: A FAR threshold is chosen so that the true FAR is at most the target with this confidence (Clopper-Pearson upper
#: bound on the calibration impostors). 0.5 is close to the point estimate; 0.95 needs ~3/FAR impostor pairs.
DEFAULT_CONFIDENCE = 0.8


def allowed_false_accepts(n_impostor: int, far: float, confidence: float) -> int | None:
    """The most false accepts k among ``n_impostor`` calibration impostors for which the one-sided Clopper-Pearson
    upper bound on the true FAR, at ``confidence``, is still ≤ ``far``. None when even k = 0 is not enough (too few
    impostors to claim that FAR with that confidence). Confidence 0.5 is close to the plain point estimate."""
    from scipy.stats import beta

    if n_impostor <= 0:
        return None
    k = -1
    while k + 1 < n_impostor and beta.ppf(confidence, k + 2, n_impostor - k - 1) <= far:
        k += 1
    return k if k >= 0 else None


def threshold_at_far(scores: np.ndarray, labels: np.ndarray, far: float, confidence: float = 0.8) -> float:
    """The lowest threshold whose false accepts on these impostors keep FAR ≤ ``far`` with ``confidence`` (see
    ``allowed_false_accepts``). Raises ``not_enough_data`` when the impostors cannot support that."""
    imp = np.sort(scores[~labels.astype(bool)])[::-1]
    k = allowed_false_accepts(len(imp), far, confidence)
    if k is None:
        raise IdsvcError("not_enough_data", f"{len(imp)} impostor pairs cannot measure FAR {far:g} with "
                         f"{confidence:.0%} confidence; need at least {min_impostors(far, confidence)}")
    return float(np.nextafter(np.float32(imp[k]), np.float32(np.inf)))  # just above the (k+1)-th highest impostor


def min_impostors(far: float, confidence: float) -> int:
    """Impostor pairs needed before FAR ``far`` can be claimed at all (zero false accepts allowed)."""
    return int(np.ceil(np.log(1 - confidence) / np.log(1 - far)))


def far_thresholds(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                   confidence: float = DEFAULT_CONFIDENCE) -> list[dict[str, Any]]:
    """For each target FAR: the threshold on all pairs, and per fold the threshold chosen on the other folds with
    the FAR/TAR it gives on the held-out fold. FARs the impostors cannot support are listed with the reason."""
    n_imp = int((~labels).sum())
    out = []
    for far in TARGET_FARS:
        row: dict[str, Any] = {"target_far": far, "impostor_pairs": n_imp, "confidence": confidence}
        k = allowed_false_accepts(n_imp, far, confidence)
        n_train = int((~labels[folds != folds[0]]).sum()) if len(np.unique(folds)) > 1 else n_imp
        if k is None or allowed_false_accepts(n_train, far, confidence) is None:
            row.update(supported=False, reason=f"{n_imp} impostor pairs cannot measure FAR {far:g} with "
                                                f"{confidence:.0%} confidence; need at least "
                                                f"{min_impostors(far, confidence) * 10 // 9 + 1} (9 folds of them "
                                                f"≥ {min_impostors(far, confidence)})")
            out.append(row)
            continue
        t_all = threshold_at_far(scores, labels, far, confidence)
        tar_all, far_all = rates(scores, labels, t_all)
        per_fold = []
        for fold in np.unique(folds):
            train, test = folds != fold, folds == fold
            t = threshold_at_far(scores[train], labels[train], far, confidence)
            tar, f = rates(scores[test], labels[test], t)
            per_fold.append({"fold": int(fold) + 1, "threshold": t, "tar": tar, "far": f})
        ts = np.array([f["threshold"] for f in per_fold])
        row.update(supported=True, allowed_false_accepts=k, low_confidence=bool(n_imp * far < 10),
                   threshold=t_all, tar=tar_all, far=far_all, threshold_std=float(ts.std()),
                   heldout_far_mean=float(np.mean([f["far"] for f in per_fold])),
                   heldout_tar_mean=float(np.mean([f["tar"] for f in per_fold])), folds=per_fold)
        out.append(row)
    return out


def verification_calibration(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                             confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    labels = labels.astype(bool)
    acc = kfold_accuracy(scores, labels, folds)
    t_best, _ = best_accuracy_threshold(scores, labels)
    e, e_thr = eer(scores, labels)
    return {
        "pairs": len(scores), "genuine": int(labels.sum()), "impostor": int((~labels).sum()),
        "auc": float(roc_auc_score(labels, scores)), "eer": e, "eer_threshold": e_thr,
        "accuracy": acc["accuracy"], "accuracy_std": acc["accuracy_std"], "accuracy_threshold": t_best,
        "accuracy_fold_thresholds": acc["fold_thresholds"], "tar_at_far_1e-3": tar_at_far(scores, labels, 1e-3),
        "far_thresholds": far_thresholds(scores, labels, folds, confidence),
    }


def choose(cal: dict[str, Any], scores: np.ndarray, labels: np.ndarray, mode: str, target_far: float,
           confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, dict[str, Any]]:
    """The operating point: best accuracy, or the threshold at ``target_far``. Raises ``not_enough_data``."""
    if mode == "accuracy":
        return cal["accuracy_threshold"], {"mode": "accuracy", "target_far": None}
    return (threshold_at_far(scores, labels, target_far, confidence),
            {"mode": "far", "target_far": target_far, "confidence": confidence})


