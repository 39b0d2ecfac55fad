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
                         progress: Callable[..., None] | None = None, plot: Path | None = None,
                         write_card: bool = False) -> dict[str, Any]:
    """The LFW protocol on a pairs file, with embeddings cached by (image sha256, model version).

    ``write_card`` records the figures and the FAR=1e-3 threshold (the model's default until a site calibrates its
    own) in the checkpoint's card; the model version does not change, as it hashes only weights and preprocessing.
    """
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
    if write_card:
        from idsvc.evaluate import threshold_at_far

        figures = {k: report[k] for k in ("accuracy", "accuracy_std", "auc", "eer", "tar_at_far_1e-3", "pairs",
                                          "images", "no_face")}
        figures["threshold_best_accuracy"] = report["threshold"]
        figures["pairs_file"] = str(pairs_file)
        from idsvc.calibrate import DEFAULT_CONFIDENCE

        thr = threshold_at_far(scores, labels, 1e-3, DEFAULT_CONFIDENCE)
        update_card(settings.model, {"lfw": figures, "threshold": thr,
                                     "threshold_note": f"LFW View 2, all 6,000 pairs: FAR ≤ 1e-3 with "
                                                       f"{DEFAULT_CONFIDENCE:.0%} confidence"})
        report["card_threshold"] = thr
    return report


def update_card(path: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a checkpoint with card fields changed (weights untouched, so the model version stays)."""
    import json
    import os

    import torch

    from idsvc.encoder import file_sha256, read_checkpoint

    blob = read_checkpoint(path)
    blob["card"].update(changes)
    tmp = Path(str(path) + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    card = dict(blob["card"], file_sha256=file_sha256(Path(path)))
    Path(str(path) + ".card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def calibrate_data(settings: Settings, data: Path, *, images: Path | None = None, mode: str = "far",
                   target_far: float = 1e-3, save: bool = False, report_dir: Path | None = None,
                   max_pairs: int = 3000, seed: int = 0, confidence: float | None = None,
                   progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Measure thresholds for the active model on a pairs file (with ``images``) or a folder of identities."""
    import numpy as np

    from idsvc import calibrate as cal_mod
    from idsvc.errors import IdsvcError
    from idsvc.evaluate import embed_photos, path_sha256, rates

    if mode not in ("far", "accuracy"):
        raise IdsvcError("invalid_argument", f"--mode must be far or accuracy, not {mode!r}")
    if not 0 < target_far < 1:
        raise IdsvcError("invalid_argument", "--target-far must be between 0 and 1")
    confidence = cal_mod.DEFAULT_CONFIDENCE if confidence is None else confidence
    if not 0 < confidence < 1:
        raise IdsvcError("invalid_argument", "--confidence must be between 0 and 1")
    if data.is_file():
        if images is None:
            raise IdsvcError("invalid_argument", "a pairs file needs --images ROOT")
        pairset = cal_mod.PairSet(read_pairs(data, images), "pairs_file", {})
    elif data.is_dir():
        pairset = cal_mod.folder_pairs(data, max_pairs=max_pairs, seed=seed)
    else:
        raise IdsvcError("file_not_found", f"{data}: no such file or folder", path=str(data))
    encoder = load_encoder(settings.model, device=settings.device, batch_size=settings.batch_size)
    pipeline = Pipeline(settings, encoder)
    photos = sorted({p for pair in pairset.pairs for p in (pair.a, pair.b)}
                    | {f for files in pairset.identities.values() for f in files})
    missing = [p for p in photos if not p.is_file()]
    if missing:
        raise IdsvcError("file_not_found", f"{missing[0]}: no such file ({len(missing)} missing)")
    if progress:
        progress(0, total=len(photos))
    cache = EmbeddingCache(settings.cache_dir, encoder.version)
    sha_of = {p: path_sha256(p) for p in photos}
    vectors, no_face = embed_photos(pipeline, photos, cache, progress, shas=[sha_of[p] for p in photos])
    emb = dict(zip(photos, vectors))
    pairs = pairset.pairs
    scores = np.array([float(emb[p.a] @ emb[p.b]) for p in pairs])
    labels = np.array([p.same for p in pairs], dtype=bool)
    folds = np.array([p.fold for p in pairs])
    cal = cal_mod.verification_calibration(scores, labels, folds, confidence)
    threshold, point = cal_mod.choose(cal, scores, labels, mode, target_far, confidence)
    tar, far = rates(scores, labels, threshold)
    result: dict[str, Any] = {
        "model_version": encoder.version, "data": str(data), "source": pairset.source,
        "data_sha256": cal_mod.data_hash(pairs, sha_of), "images": len(photos), "no_face": no_face,
        **cal, "threshold": threshold, "operating_point": {**point, "tar": tar, "far": far},
    }
    if pairset.identities:
        thr_list = sorted({threshold, cal["accuracy_threshold"]}
                          | {r["threshold"] for r in cal["far_thresholds"] if r.get("supported")})
        result["open_set"] = cal_mod.open_set(emb, pairset.identities, thr_list, seed=seed)
    if save:
        from idsvc.registry import Registry

        settings.home.mkdir(parents=True, exist_ok=True)
        reg = Registry(settings.db_url)
        try:
            result["saved"] = reg.save_threshold(
                encoder.version, threshold, point["mode"], point["target_far"], result["data_sha256"],
                cal["genuine"], cal["impostor"],
                {"data": str(data), "tar": tar, "far": far, "auc": cal["auc"], "eer": cal["eer"]})
        finally:
            reg.close()
    if report_dir is not None:
        result["report"] = write_calibration_report(report_dir, result, pairs, scores, labels, pipeline)
    return result


def write_calibration_report(out: Path, result: dict[str, Any], pairs: list, scores, labels, pipeline) -> dict:
    """PNGs (ROC with the operating point, score histograms, error rates, worst errors) + summary.json/.md."""
    import json

    import numpy as np

    from idsvc import plots

    out.mkdir(parents=True, exist_ok=True)
    thr = result["threshold"]
    label = (f"FAR {result['operating_point']['target_far']:g}" if result["operating_point"]["mode"] == "far"
             else "best accuracy")
    files = {
        "roc": plots.roc_plot(out / "roc.png", scores, labels, f"ROC — {result['model_version']}", (thr, label)),
        "histogram": plots.histogram_plot(out / "scores.png", scores, labels, thr, "genuine vs impostor scores"),
        "error_rates": plots.error_rates_plot(out / "error_rates.png", scores, labels, thr,
                                              "false accept / false reject vs threshold"),
    }
    fa = [i for i in np.argsort(-scores) if not labels[i] and scores[i] >= thr][:6]
    fr = [i for i in np.argsort(scores) if labels[i] and scores[i] < thr][:6]
    for name, idxs, title in (("false_accepts", fa, "worst false accepts (impostors above threshold)"),
                              ("false_rejects", fr, "worst false rejects (genuine below threshold)")):
        rows = []
        if len(idxs):
            paths = [p for i in idxs for p in (pairs[i].a, pairs[i].b)]
            crops, _ = pipeline.eval_crops(paths)
            for j, i in enumerate(idxs):
                rows.append((crops[2 * j], crops[2 * j + 1],
                             f"{scores[i]:.3f}  {pairs[i].a.parent.name} / {pairs[i].b.parent.name}"))
        files[name] = plots.contact_sheet(out / f"{name}.png", rows, f"{title}, threshold {thr:.3f}")
    summary = {k: v for k, v in result.items() if k not in ("report",)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(calibration_markdown(summary))
    return {k: str(v) for k, v in files.items()} | {"summary": str(out / "summary.md")}


def calibration_markdown(r: dict[str, Any]) -> str:
    op = r["operating_point"]
    lines = [f"# Calibration of {r['model_version']}", "",
             f"Data: `{r['data']}` ({r['source']}, sha256 {r['data_sha256'][:16]}…): {r['genuine']} genuine and "
             f"{r['impostor']} impostor pairs from {r['images']} photos ({r['no_face']} without a detected face).", "",
             f"**Chosen threshold: {r['threshold']:.4f}** ({op['mode']}"
             + (f", target FAR {op['target_far']:g}" if op["target_far"] else "")
             + f"): TAR {op['tar']:.4f}, FAR {op['far']:.4g} on these pairs.", "",
             "| metric | value |", "|---|---|",
             f"| ROC AUC | {r['auc']:.4f} |", f"| EER | {r['eer'] * 100:.2f}% (threshold {r['eer_threshold']:.4f}) |",
             f"| 10-fold accuracy | {r['accuracy'] * 100:.2f}% ± {r['accuracy_std'] * 100:.2f} |",
             f"| best-accuracy threshold | {r['accuracy_threshold']:.4f} |", "",
             "## Thresholds at target FARs (chosen on 9 folds, measured on the 10th)", "",
             f"Each threshold keeps the true FAR at or below its target with {r['far_thresholds'][0]['confidence']:.0%} "
             "confidence (one-sided Clopper-Pearson bound on the impostor pairs), so it allows fewer false accepts "
             "than the point estimate would.", "",
             "| target FAR | threshold (all pairs) | ± across folds | held-out FAR | held-out TAR |", "|---|---|---|---|---|"]
    for row in r["far_thresholds"]:
        if row["supported"]:
            lines.append(f"| {row['target_far']:g} | {row['threshold']:.4f} | {row['threshold_std']:.4f} | "
                         f"{row['heldout_far_mean']:.4g} | {row['heldout_tar_mean']:.4f} |"
                         + (" (few impostors)" if row["low_confidence"] else ""))
        else:
            lines.append(f"| {row['target_far']:g} | — | — | — | {row['reason']} |")
    if "open_set" in r:
        o = r["open_set"]
        lines += ["", f"## Open-set 1:N ({o['gallery_identities']} gallery identities, {o['gallery_templates']} "
                      f"templates; {o['mated_probes']} mated and {o['non_mated_probes']} non-mated probes)", "",
                  f"Rank-1 accuracy of mated probes: {o['rank1_accuracy'] * 100:.2f}%", "",
                  "| threshold | FPIR | FNIR |", "|---|---|---|"]
        lines += [f"| {x['threshold']:.4f} | {x['fpir']:.4f} | {x['fnir']:.4f} |" for x in o["rates"]]
    lines += ["", "Figures: roc.png, scores.png, error_rates.png, false_accepts.png, false_rejects.png.", ""]
    return "\n".join(lines)
