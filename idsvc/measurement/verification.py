"""Verification metrics the standard way (LFW View 2): 10-fold accuracy with the threshold chosen on the other nine
folds, ROC AUC, EER, TAR at a fixed FAR, and the exact McNemar test between two models on the same pairs. Scores are
cosine similarities; a match is ``score >= threshold``. Numbers in, numbers out: no photos, no models."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def best_accuracy_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold maximising accuracy of ``score >= t`` (a midpoint between neighbouring scores), and that
    accuracy. Exact, O(n log n)."""
    order = np.argsort(scores)
    s, y = scores[order], labels[order].astype(bool)
    n = len(s)
    # Threshold just above s[k-1]: pairs 0..k-1 rejected. correct(k) = negatives below + positives at/above.
    neg_below = np.concatenate([[0], np.cumsum(~y)])
    pos_above = y.sum() - np.concatenate([[0], np.cumsum(y)])
    correct = neg_below + pos_above
    k = int(np.argmax(correct))
    if k == 0:
        t = s[0] - 1e-6
    elif k == n:
        t = s[-1] + 1e-6
    else:
        t = (s[k - 1] + s[k]) / 2
    return float(t), float(correct[k] / n)


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TAR, FAR) of ``score >= threshold``."""
    y = labels.astype(bool)
    accept = scores >= threshold
    tar = float(accept[y].mean()) if y.any() else float("nan")
    far = float(accept[~y].mean()) if (~y).any() else float("nan")
    return tar, far


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where FAR ≈ FRR."""
    fpr, tpr, thr = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2), float(thr[i])


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> float:
    fpr, tpr, _ = roc_curve(labels, scores)
    ok = fpr <= far
    return float(tpr[ok].max()) if ok.any() else 0.0


def kfold_correct(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """LFW protocol, pair by pair: (whether each pair is decided right by the best-accuracy threshold of the other
    folds, each fold's threshold). Two models compared on the same pairs get the same protocol."""
    correct = np.zeros(len(scores), dtype=bool)
    thresholds = []
    for k in np.unique(folds):
        train = folds != k
        t, _ = best_accuracy_threshold(scores[train], labels[train])
        test = ~train
        correct[test] = (scores[test] >= t) == labels[test].astype(bool)
        thresholds.append(t)
    return correct, thresholds


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> dict:
    """LFW protocol: for each fold, the best-accuracy threshold on the other folds, tested on this one."""
    correct, thresholds = kfold_correct(scores, labels, folds)
    accs = [float(correct[folds == k].mean()) for k in np.unique(folds)]
    return {"accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)), "fold_accuracy": accs,
            "fold_thresholds": thresholds, "threshold": float(np.mean(thresholds))}


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """Exact McNemar test of two classifiers on the same pairs: only the discordant pairs count (b = A right and
    B wrong, c = A wrong and B right); under "equally accurate" b ~ Binomial(b + c, 1/2). Two-sided p-value."""
    from scipy.stats import binomtest

    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"a_only": b, "b_only": c, "p_value": p}


def verification_report(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> dict:
    """Everything the README and model card quote for a pairs benchmark."""
    labels = labels.astype(bool)
    rep = kfold_accuracy(scores, labels, folds)
    e, e_thr = eer(scores, labels)
    rep.update({
        "pairs": len(scores), "genuine": int(labels.sum()), "impostor": int((~labels).sum()),
        "auc": float(roc_auc_score(labels, scores)), "eer": e, "eer_threshold": e_thr,
        "tar_at_far_1e-3": tar_at_far(scores, labels, 1e-3),
    })
    return rep


