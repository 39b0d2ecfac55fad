"""Measured thresholds: ROC, EER, best accuracy and thresholds at target FARs on labelled pairs, plus open-set 1:N
rates (FPIR/FNIR) on a folder of identities. A threshold is a property of a model *and* of the population it serves,
so it is stored per model version with the hash of the data that produced it.

Fold logic follows LFW: a threshold is chosen on nine folds and measured on the tenth, so the reported spread says
how well it transfers to unseen pairs.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from idsvc.errors import IdsvcError
from idsvc.evaluate import (
    Pair,
    allowed_false_accepts,
    best_accuracy_threshold,
    eer,
    kfold_accuracy,
    min_impostors,
    rates,
    tar_at_far,
    threshold_at_far,
)
from idsvc.imageio import IMAGE_SUFFIXES

TARGET_FARS = (1e-2, 1e-3, 1e-4)
FOLDS = 10
#: A FAR threshold is chosen so that the true FAR is at most the target with this confidence (Clopper-Pearson upper
#: bound on the calibration impostors). 0.5 is close to the point estimate; 0.95 needs ~3/FAR impostor pairs.
DEFAULT_CONFIDENCE = 0.8


@dataclass(frozen=True)
class PairSet:
    pairs: list[Pair]
    source: str           # "pairs_file" or "folder"
    identities: dict[str, list[Path]]  # folder mode only: identity -> photos


def folder_identities(root: Path) -> dict[str, list[Path]]:
    """{identity: photos} for a folder with one sub-folder of photos per identity."""
    if not root.is_dir():
        raise IdsvcError("file_not_found", f"{root}: no such folder", path=str(root))
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out[d.name] = files
    if len(out) < 2:
        raise IdsvcError("not_enough_data", f"{root}: need at least two identity folders with photos")
    return out


def folder_pairs(root: Path, max_pairs: int = 3000, seed: int = 0) -> PairSet:
    """All genuine pairs (sampled down to ``max_pairs``) and as many seeded impostor pairs as exist, up to the same
    number, spread over 10 folds. Raises ``invalid_argument`` and ``not_enough_data``."""
    if max_pairs < 1:
        raise IdsvcError("invalid_argument", f"--max-pairs must be at least 1, not {max_pairs}")
    ids = folder_identities(root)
    # seeded sampling of pairs, reproducible on purpose; not a secret
    rng = random.Random(seed)  # nosec B311
    genuine = [(a, b) for files in ids.values() for a, b in itertools.combinations(files, 2)]
    if not genuine:
        raise IdsvcError("not_enough_data", f"{root}: no identity has two photos, so there are no genuine pairs")
    if len(genuine) > max_pairs:
        genuine = rng.sample(genuine, max_pairs)
    impostor = _impostor_pairs(ids, len(genuine), rng)
    pairs = [Pair(a, b, True, 0) for a, b in genuine] + [Pair(a, b, False, 0) for a, b in sorted(impostor)]
    order = list(range(len(pairs)))
    rng.shuffle(order)
    pairs = [Pair(pairs[i].a, pairs[i].b, pairs[i].same, k % FOLDS) for k, i in enumerate(order)]
    return PairSet(pairs, "folder", ids)


def _impostor_pairs(ids: dict[str, list[Path]], wanted: int, rng: random.Random) -> set[tuple[Path, Path]]:
    """Up to ``wanted`` distinct cross-identity pairs. When they are few (an unbalanced folder), all are listed and
    sampled, so the loop never waits for pairs that do not exist; otherwise they are drawn at random."""
    names = list(ids)
    available = sum(len(ids[a]) * len(ids[b]) for a, b in itertools.combinations(names, 2))
    if available <= 4 * wanted:
        every = [(x, y) for a, b in itertools.combinations(names, 2) for x in ids[a] for y in ids[b]]
        return set(rng.sample(every, min(wanted, len(every))))
    impostor: set[tuple[Path, Path]] = set()
    while len(impostor) < wanted:  # at most a quarter of the space is taken, so a draw is new ≥ 75% of the time
        n1, n2 = rng.sample(names, 2)
        impostor.add((rng.choice(ids[n1]), rng.choice(ids[n2])))
    return impostor


def data_hash(pairs: list[Pair], sha_of: dict[Path, str]) -> str:
    h = hashlib.sha256()
    for p in sorted(pairs, key=lambda p: (sha_of[p.a], sha_of[p.b], p.same)):
        h.update(f"{sha_of[p.a]}|{sha_of[p.b]}|{int(p.same)}\n".encode())
    return h.hexdigest()


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


def open_set(emb: dict[Path, np.ndarray], identities: dict[str, list[Path]], thresholds: list[float],
             seed: int = 0, unknown_fraction: float = 0.2) -> dict[str, Any]:
    """Open-set identification: a gallery of known identities (the first half of each one's photos), mated probes
    (their other photos) and non-mated probes (every photo of identities left out of the gallery).

    FNIR(t): mated probes whose rank-1 identity is wrong or scores below t. FPIR(t): non-mated probes whose best
    score reaches t. Both depend on gallery size, which is reported with them.
    """
    # seeded sampling of pairs, reproducible on purpose; not a secret
    rng = random.Random(seed)  # nosec B311
    names = [n for n, files in identities.items() if files]
    rng.shuffle(names)
    n_unknown = max(1, int(len(names) * unknown_fraction))
    unknown, known = names[:n_unknown], names[n_unknown:]
    gallery_vecs, gallery_owner, mated, mated_owner = [], [], [], []
    for i, n in enumerate(known):
        files = identities[n]
        g = files[: max(1, len(files) // 2)]
        for f in g:
            gallery_vecs.append(emb[f])
            gallery_owner.append(i)
        for f in files[len(g):]:
            mated.append(emb[f])
            mated_owner.append(i)
    non_mated = [emb[f] for n in unknown for f in identities[n]]
    if not gallery_vecs or not mated or not non_mated:
        raise IdsvcError("not_enough_data", "open-set evaluation needs identities with two or more photos and "
                         "identities left out of the gallery")
    G = np.stack(gallery_vecs)
    owner = np.array(gallery_owner)

    def best_per_identity(P: np.ndarray) -> np.ndarray:
        s = P @ G.T
        out = np.full((len(P), len(known)), -np.inf, dtype=np.float32)
        for j in range(len(known)):
            out[:, j] = s[:, owner == j].max(axis=1)
        return out

    m = best_per_identity(np.stack(mated))
    m_rank1, m_score = m.argmax(axis=1), m.max(axis=1)
    correct = m_rank1 == np.array(mated_owner)
    nm_score = best_per_identity(np.stack(non_mated)).max(axis=1)
    rows = [{"threshold": float(t), "fnir": float(1 - (correct & (m_score >= t)).mean()),
             "fpir": float((nm_score >= t).mean())} for t in thresholds]
    return {"gallery_identities": len(known), "gallery_templates": len(G), "mated_probes": len(mated),
            "non_mated_probes": len(non_mated), "rank1_accuracy": float(correct.mean()), "rates": rows}
