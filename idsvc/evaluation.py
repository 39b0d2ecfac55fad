"""``idsvc eval``: the LFW protocol on a pairs file with the home's active model, embeddings cached by (image sha256,
model version). The metrics themselves live in ``evaluate``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from idsvc.calibrate import DEFAULT_CONFIDENCE
from idsvc.evaluate import EmbeddingCache, evaluate_pairs, read_pairs, threshold_at_far
from idsvc.home import Home

CARD_FIGURES = ("accuracy", "accuracy_std", "auc", "eer", "tar_at_far_1e-3", "pairs", "images", "no_face")


def evaluate_pairs_file(home: Home, images: Path, pairs_file: Path, *, progress: Callable[..., None] | None = None,
                        plot: Path | None = None, write_card: bool = False) -> dict[str, Any]:
    """10-fold accuracy, AUC, EER, TAR@FAR=1e-3 of the active model on ``pairs_file``.

    ``write_card`` records the figures and the FAR=1e-3 threshold (the model's default until a site calibrates its
    own) in the active checkpoint's card; the model version does not change, as it hashes only weights and
    preprocessing. Raises ``file_not_found`` and ``invalid_pairs_file``.
    """
    from idsvc.encoder import update_card

    pairs = read_pairs(pairs_file, images)
    model = home.model
    if progress:
        progress(0, total=len({p for pair in pairs for p in (pair.a, pair.b)}))
    cache = EmbeddingCache(home.settings.cache_dir, model.version, model.pipeline.recipe)
    report, scores, labels = evaluate_pairs(model.pipeline, pairs, cache, progress)
    report["model_version"] = model.version
    report["model_path"] = str(model.path)
    if plot is not None:
        from idsvc.plots import roc_plot

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
    return report
