"""Offline workflows over whole data sets (evaluation), shared by the CLI and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from idsvc.encoder import load_encoder
from idsvc.evaluate import EmbeddingCache, evaluate_pairs, read_pairs
from idsvc.pipeline import Pipeline
from idsvc.settings import Settings


def evaluate_pairs_files(settings: Settings, images: Path, pairs_file: Path,
                         progress: Callable[..., None] | None = None, plot: Path | None = None) -> dict[str, Any]:
    """The LFW protocol on a pairs file, with embeddings cached by (image sha256, model version)."""
    pairs = read_pairs(pairs_file, images)
    encoder = load_encoder(settings.model, device=settings.device, batch_size=settings.batch_size)
    pipeline = Pipeline(settings, encoder)
    photos = sorted({p for pair in pairs for p in (pair.a, pair.b)})
    if progress:
        progress(0, total=len(photos))
    cache = EmbeddingCache(settings.cache_dir, encoder.version)
    report, scores, labels = evaluate_pairs(pipeline, pairs, cache, progress)
    report["model_version"] = encoder.version
    if plot is not None:
        from idsvc.plots import roc_plot

        roc_plot(plot, scores, labels, f"{encoder.version}: {report['accuracy'] * 100:.2f}% 10-fold",
                 (report["threshold"], "best accuracy"))
        report["plot"] = str(plot)
    return report
