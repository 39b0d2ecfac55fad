"""PNG figures for eval and calibrate reports (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def roc_plot(path: Path, scores: np.ndarray, labels: np.ndarray, title: str,
             operating: tuple[float, str] | None = None) -> Path:
    """ROC on a log FAR axis; ``operating`` = (threshold, label) marks the chosen point."""
    from sklearn.metrics import roc_curve

    plt = _plt()
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    ax.plot(np.maximum(fpr, 1e-5), tpr, lw=2, label="ROC")
    if operating is not None:
        t, label = operating
        far = float((scores[~labels] >= t).mean())
        tar = float((scores[labels] >= t).mean())
        ax.plot([max(far, 1e-5)], [tar], "o", color="crimson", ms=8,
                label=f"{label}: threshold {t:.3f}, TAR {tar:.3f} @ FAR {far:.1e}")
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate (log)")
    ax.set_ylabel("true accept rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(plt, fig, path)


def histogram_plot(path: Path, scores: np.ndarray, labels: np.ndarray, threshold: float, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    bins = np.linspace(min(-0.2, scores.min()), 1.0, 60)
    ax.hist(scores[labels], bins=bins, alpha=0.6, label=f"genuine ({labels.sum()})", color="tab:green")
    ax.hist(scores[~labels], bins=bins, alpha=0.6, label=f"impostor ({(~labels).sum()})", color="tab:red")
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("cosine score")
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def error_rates_plot(path: Path, scores: np.ndarray, labels: np.ndarray, threshold: float, title: str) -> Path:
    plt = _plt()
    ts = np.linspace(scores.min(), scores.max(), 400)
    far = np.array([(scores[~labels] >= t).mean() for t in ts])
    frr = np.array([(scores[labels] < t).mean() for t in ts])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(ts, far, label="false accept rate", color="tab:red")
    ax.plot(ts, frr, label="false reject rate", color="tab:blue")
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.05)
    ax.set_xlabel("threshold (cosine score)")
    ax.set_ylabel("rate (log)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def contact_sheet(path: Path, rows: list[tuple[np.ndarray, np.ndarray, str]], title: str) -> Path:
    """Pairs of face crops side by side, each row captioned (e.g. with its score)."""
    plt = _plt()
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, 2, figsize=(4, 2.1 * n), dpi=100, squeeze=False)
    for r, (a, b, caption) in enumerate(rows):
        for c, img in enumerate((a, b)):
            axes[r][c].imshow(img)
            axes[r][c].axis("off")
        axes[r][0].set_title(caption, fontsize=8, loc="left")
    if not rows:
        axes[0][0].text(0.5, 0.5, "none", ha="center")
        axes[0][0].axis("off")
        axes[0][1].axis("off")
    import textwrap

    fig.suptitle(textwrap.fill(title, 42), fontsize=9)
    return _save(plt, fig, path)
