"""Verification metrics the standard way (LFW View 2): 10-fold accuracy with the threshold chosen on the other nine
folds, ROC AUC, EER, and TAR at a fixed FAR. Scores are cosine similarities; a match is ``score >= threshold``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from idsvc.errors import IdsvcError


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool
    fold: int


def read_pairs(pairs_file: str | Path, images: str | Path) -> list[Pair]:
    """Parse LFW's ``pairs.txt``: a header ``folds n``, then per fold n matched ``name i j`` lines and n mismatched
    ``name1 i name2 j`` lines. Raises ``file_not_found`` / ``invalid_pairs_file``."""
    pf, root = Path(pairs_file), Path(images)
    if not pf.is_file():
        raise IdsvcError("file_not_found", f"{pf}: no such pairs file", path=str(pf))
    try:
        lines = [ln.split() for ln in pf.read_text().splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise IdsvcError("invalid_pairs_file", f"{pf}: not a text file", path=str(pf)) from None
    try:
        folds, per = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError):
        raise IdsvcError("invalid_pairs_file", f"{pf}: first line must be '<folds> <pairs per half-fold>'") from None
    body = lines[1:]
    if len(body) != folds * per * 2:
        raise IdsvcError("invalid_pairs_file", f"{pf}: expected {folds * per * 2} pair lines, found {len(body)}")

    def img(name: str, num: str) -> Path:
        if not num.isdigit():
            raise IdsvcError("invalid_pairs_file", f"{pf}: line {i + 2}: photo number {num!r} is not a number",
                             path=str(pf), line=i + 2)
        return root / name / f"{name}_{int(num):04d}.jpg"

    pairs = []
    for i, f in enumerate(body):
        fold = i // (2 * per)
        if len(f) == 3:
            pairs.append(Pair(img(f[0], f[1]), img(f[0], f[2]), True, fold))
        elif len(f) == 4:
            pairs.append(Pair(img(f[0], f[1]), img(f[2], f[3]), False, fold))
        else:
            raise IdsvcError("invalid_pairs_file", f"{pf}: line {i + 2} has {len(f)} fields, expected 3 or 4")
    return pairs


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


def path_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class EmbeddingCache:
    """Embeddings of whole photos keyed by (image sha256, model version), so a re-run of eval or calibrate only
    embeds new photos. One ``.npz`` per model version under ``<home>/cache/embeddings``; ``found`` records whether
    a face was detected (False = centre-crop fallback)."""

    def __init__(self, cache_dir: Path, model_version: str, recipe: str = "") -> None:
        name = model_version + (f"-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}" if recipe else "")
        self.path = cache_dir / "embeddings" / f"{name}.npz"
        self.data: dict[str, np.ndarray] = {}
        self.found: dict[str, bool] = {}
        if self.path.is_file():
            with np.load(self.path) as z:
                shas = z["sha"].tolist()
                self.data = dict(zip(shas, z["emb"]))
                flags = z["found"].tolist() if "found" in z.files else [True] * len(shas)
                self.found = dict(zip(shas, flags))

    def get(self, sha: str) -> np.ndarray | None:
        return self.data.get(sha)

    def put_many(self, shas: list[str], embs: np.ndarray, found: np.ndarray) -> None:
        self.data.update(zip(shas, embs))
        self.found.update(zip(shas, (bool(f) for f in found)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        keys = list(self.data)
        np.savez(tmp, sha=np.array(keys), emb=np.stack([self.data[k] for k in keys]),
                 found=np.array([self.found.get(k, True) for k in keys]))
        tmp.replace(self.path)


def embed_photos(pipeline, paths: list[Path], cache: EmbeddingCache,
                 progress: Callable[[int], None] | None = None, chunk: int = 256,
                 shas: list[str] | None = None) -> tuple[np.ndarray, int]:
    """((N, D) embeddings, photos with no face found) for whole photos: the chosen face, or the whole photo where
    none is found. Photos are read once to hash them; only unseen hashes go through detection and the encoder.
    ``shas`` (the photos' sha256, when the caller already has them) saves reading every photo a second time.
    """
    shas = shas if shas is not None else [path_sha256(p) for p in paths]
    todo = sorted({s: p for s, p in zip(shas, paths) if cache.get(s) is None}.items())
    done = len(paths) - len(todo)
    if progress and done:
        progress(done)
    for i in range(0, len(todo), chunk):
        part = todo[i:i + chunk]
        crops, found, landmarks = pipeline.eval_crops([p for _, p in part])
        cache.put_many([s for s, _ in part], pipeline.encoder.embed(crops, landmarks), found)
        if progress:
            progress(len(part))
    no_face = sum(1 for s in set(shas) if not cache.found.get(s, True))
    return np.stack([cache.data[s] for s in shas]), no_face  # every sha is in the cache by now


def evaluate_pairs(pipeline, pairs: list[Pair], cache: EmbeddingCache,
                   progress: Callable[[int], None] | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """Score every pair with the pipeline's encoder. Returns (report, scores, labels)."""
    photos = sorted({p for pair in pairs for p in (pair.a, pair.b)})
    missing = [p for p in photos if not p.is_file()]
    if missing:
        raise IdsvcError("file_not_found", f"{missing[0]}: no such file ({len(missing)} pair images missing)",
                         path=str(missing[0]))
    vectors, no_face = embed_photos(pipeline, photos, cache, progress)
    emb = dict(zip(photos, vectors))
    scores = np.array([float(emb[p.a] @ emb[p.b]) for p in pairs], dtype=np.float64)
    labels = np.array([p.same for p in pairs], dtype=bool)
    folds = np.array([p.fold for p in pairs])
    report = verification_report(scores, labels, folds)
    report["images"] = len(photos)
    report["no_face"] = no_face
    return report, scores, labels
