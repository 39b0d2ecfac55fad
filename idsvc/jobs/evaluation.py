"""``idsvc eval``: the LFW protocol on a pairs file with the home's active model, embeddings cached by (image sha256,
model version). The metrics themselves live in ``idsvc.measurement.verification``; ``embed_photos`` is also how
``calibrate`` embeds its photos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from idsvc.checksums import file_sha256
from idsvc.errors import IdsvcError
from idsvc.home import Home
from idsvc.measurement.far import DEFAULT_CONFIDENCE, threshold_at_far
from idsvc.measurement.pairs import Pair, read_pairs
from idsvc.measurement.verification import verification_report
from idsvc.results import Evaluation
from idsvc.storage.embedding_cache import EmbeddingCache

if TYPE_CHECKING:
    from idsvc.home.pipeline import Pipeline

CARD_FIGURES = ("accuracy", "accuracy_std", "auc", "eer", "tar_at_far_1e-3", "pairs", "images", "no_face")


def evaluate_pairs_file(home: Home, images: Path, pairs_file: Path, *, progress: Callable[..., None] | None = None,
                        plot: Path | None = None, write_card: bool = False) -> Evaluation:
    """10-fold accuracy, AUC, EER, TAR@FAR=1e-3 of the active model on ``pairs_file``.

    ``write_card`` records the figures and the FAR=1e-3 threshold (the model's default until a site calibrates its
    own) in the active checkpoint's card; the model version does not change, as it hashes only weights and
    preprocessing. Raises ``file_not_found`` and ``invalid_pairs_file``.
    """
    from idsvc.encoders.checkpoint import update_card

    pairs = read_pairs(pairs_file, images)
    model = home.model
    if progress:
        progress(0, total=len({p for pair in pairs for p in (pair.a, pair.b)}))
    cache = EmbeddingCache(home.settings.cache_dir, model.version, model.pipeline.recipe)
    report, scores, labels = evaluate_pairs(model.pipeline, pairs, cache, progress)
    report["model_version"] = model.version
    report["model_path"] = str(model.path)
    if plot is not None:
        from idsvc.measurement.plots import roc_plot

        roc_plot(plot, scores, labels, f"{model.version}: {report['accuracy'] * 100:.2f}% 10-fold",
                 (report["threshold"], "best accuracy"))
        report["plot"] = str(plot)
    if write_card:
        figures: dict[str, Any] = {k: report[k] for k in CARD_FIGURES}
        figures["threshold_best_accuracy"] = report["threshold"]
        figures["pairs_file"] = str(pairs_file)
        thr = threshold_at_far(scores, labels, 1e-3, DEFAULT_CONFIDENCE)
        update_card(model.path, {"lfw": figures, "threshold": thr,
                                 "threshold_note": f"LFW View 2, all 6,000 pairs: FAR ≤ 1e-3 with "
                                                   f"{DEFAULT_CONFIDENCE:.0%} confidence"})
        report["card_threshold"] = thr
    return Evaluation.model_validate(report)


def embed_photos(pipeline: Pipeline, paths: list[Path], cache: EmbeddingCache,
                 progress: Callable[[int], None] | None = None, chunk: int = 256,
                 shas: list[str] | None = None) -> tuple[np.ndarray, int]:
    """((N, D) embeddings, photos with no face found) for whole photos: the chosen face, or the whole photo where
    none is found. Photos are read once to hash them; only unseen hashes go through detection and the encoder.
    ``shas`` (the photos' sha256, when the caller already has them) saves reading every photo a second time.
    """
    shas = shas if shas is not None else [file_sha256(p) for p in paths]
    todo = sorted({s: p for s, p in zip(shas, paths) if cache.get(s) is None}.items())
    done = len(paths) - len(todo)
    if progress and done:
        progress(done)
    for i in range(0, len(todo), chunk):
        part = todo[i:i + chunk]
        crops, found, landmarks = pipeline.eval_crops([p for _, p in part])
        cache.put_many([s for s, _ in part], pipeline.embed_arrays(crops, landmarks), found)
        if progress:
            progress(len(part))
    no_face = sum(1 for s in set(shas) if not cache.found.get(s, True))
    return np.stack([cache.data[s] for s in shas]), no_face  # every sha is in the cache by now


def evaluate_pairs(pipeline: Pipeline, pairs: list[Pair], cache: EmbeddingCache,
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
