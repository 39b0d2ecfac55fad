"""The calibration report: ROC with the operating point, score histograms, error rates, the worst errors as contact
sheets, and summary.json/.md — what an operator reads before trusting a threshold."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from idsvc.errors import IdsvcError
from idsvc.measurement.pairs import Pair

#: Face crops of photos, for the contact sheets: (N, S, S, 3) uint8 for N paths (the caller's face pipeline).
CropsOf = Callable[[list[Path]], np.ndarray]


def write_calibration_report(out: Path, result: dict[str, Any], pairs: list[Pair], scores: np.ndarray,
                             labels: np.ndarray, crops_of: CropsOf) -> dict[str, str]:
    """PNGs (ROC with the operating point, score histograms, error rates, worst errors) + summary.json/.md.
    Raises ``invalid_argument`` when ``out`` exists and is not a folder."""
    from idsvc.measurement import plots

    if out.exists() and not out.is_dir():
        raise IdsvcError("invalid_argument", f"--report {out}: exists and is not a folder", path=str(out))

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
            crops = crops_of(paths)
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
             "Each threshold keeps the true FAR at or below its target with "
             f"{r['far_thresholds'][0]['confidence']:.0%} "
             "confidence (one-sided Clopper-Pearson bound on the impostor pairs), so it allows fewer false accepts "
             "than the point estimate would.", "",
             "| target FAR | threshold (all pairs) | ± across folds | held-out FAR | held-out TAR |",
             "|---|---|---|---|---|"]
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
