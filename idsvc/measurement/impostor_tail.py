"""1:N thresholds from the impostor-score tail: how often two different people score at least t, measured once on
many impostor pairs, turned into the threshold a search needs so that a stranger is answered as *anyone* in a
gallery of N templates with probability at most the target FPIR.

A search compares the probe with every template and answers the best, so a stranger has N chances: with a
per-comparison false accept rate FAR(t), FPIR(t) = 1 − (1 − FAR(t))^N (taking the comparisons as independent, which
over-counts chances for the templates of one identity — so the threshold errs high). The threshold for a gallery is
therefore FAR⁻¹(1 − (1 − FPIR)^(1/N)): it rises with the gallery.

The tail is stored as points (FAR, threshold) at FAR = 10⁻¹, 10⁻², … as far as the pairs measure it (at least
``MIN_FALSE_ACCEPTS`` impostor pairs above each point), interpolated linearly in log FAR between them, and beyond the
last point extrapolated by an exponential tail (log FAR linear in the score) fitted over the last two measured
decades. Cosine scores are bounded by 1, so the true tail falls faster than an exponential: the extrapolated
threshold is too high rather than too low, a search errs toward "unknown".

A labelled photo set files some photos under the wrong identity, and the deepest impostor "pairs" are then one person
with themself: ``mislabelled`` finds those photos so that the tail is measured without them.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from idsvc.errors import IdsvcError

#: A FAR point is stored only where at least this many impostor pairs score above it.
MIN_FALSE_ACCEPTS = 10
#: The points stored: FAR 1e-1, 1e-2, ... (as far as the pairs reach).
DECADES = tuple(10.0 ** -k for k in range(1, 10))
#: No threshold rises above a perfect match (where an extrapolation would).
MAX_THRESHOLD = 1.0


def impostor_scores(vecs: np.ndarray, owner: np.ndarray, block: int = 1024) -> np.ndarray:
    """The score of every pair of rows of ``vecs`` (L2-normalised embeddings) whose ``owner`` (identity) differs,
    each pair once; ``block`` rows at a time, so that memory stays at ``block`` × N scores."""
    out = []
    for start in range(0, len(vecs), block):
        s = vecs[start:start + block] @ vecs.T
        rows = np.arange(start, min(start + block, len(vecs)))[:, None]
        out.append(s[(owner[rows] != owner[None, :]) & (np.arange(len(vecs))[None, :] > rows)])
    return np.concatenate(out)


def mislabelled(vecs: np.ndarray, owner: np.ndarray, threshold: float, block: int = 1024) -> np.ndarray:
    """Which rows of ``vecs`` (L2-normalised embeddings of labelled photos) look filed under the wrong identity: a
    photo whose median score with the photos of another identity reaches ``threshold`` (a 1:1 threshold: typical
    pairs with that identity pass as the same person) and beats its median score with its own identity's other
    photos. Two people who merely look alike are not caught — a photo of one scores with the other's photos below
    its own identity's — while a photo of B filed under A is, and of one person filed under two identities the
    photos nearer the other folder are (about half of them: three quarters of the pairs between the two). (N,) bool."""
    ids, index = np.unique(owner, return_inverse=True)
    rows_of = [np.flatnonzero(index == i) for i in range(len(ids))]
    out = np.zeros(len(vecs), dtype=bool)
    for start in range(0, len(vecs), block):
        rows = np.arange(start, min(start + block, len(vecs)))
        s = vecs[rows] @ vecs.T
        s[np.arange(len(rows)), rows] = np.nan  # a photo is not its own evidence
        with warnings.catch_warnings():  # an identity of one photo has, for that photo, no other of its own
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.stack([np.nanmedian(s[:, r], axis=1) for r in rows_of], axis=1)
        own = medians[np.arange(len(rows)), index[rows]]
        medians[np.arange(len(rows)), index[rows]] = -np.inf
        other = medians.max(axis=1)
        out[rows] = (other >= threshold) & ~(own >= other)  # no other photo of its own: only the threshold counts
    return out


def measure_tail(impostor_scores: np.ndarray, *, source: str, identities: int, photos: int,
                 lowest_far: float = DECADES[-1]) -> dict[str, Any]:
    """The tail of these impostor scores, as stored in a model card (``impostor_tail``) or with a calibrated home
    threshold, to ``lowest_far`` at most (below it the pairs may measure something else: label noise). Raises
    ``not_enough_data`` when the pairs cannot measure even FAR 1e-2."""
    s = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    n = len(s)
    points = []
    for far in DECADES:
        k = round(far * n)
        if k < MIN_FALSE_ACCEPTS or far < lowest_far * 0.999:
            break
        points.append([far, float(s[k - 1])])
    if len(points) < 2:
        raise IdsvcError("not_enough_data", f"{n} impostor pairs cannot measure the impostor tail to FAR 1e-2 "
                         f"(need at least {int(MIN_FALSE_ACCEPTS / 1e-2)})")
    # exponential fit over the last two measured decades: log10 FAR = intercept + slope * score
    lo_far, hi_far = points[-1][0], points[max(0, len(points) - 3)][0]
    a, b = round(lo_far * n), round(hi_far * n)
    slope, intercept = np.polyfit(s[a - 1:b], np.log10(np.arange(a, b + 1) / n), 1)
    return {"source": source, "impostor_pairs": n, "identities": identities, "photos": photos,
            "points": points, "fit": {"slope": float(slope), "intercept": float(intercept),
                                      "from_far": hi_far, "to_far": lo_far},
            "measured_to_far": lo_far}


def threshold_at(tail: dict[str, Any], far: float) -> tuple[float, bool]:
    """(threshold, extrapolated): the score a per-comparison FAR of ``far`` needs, by the stored tail."""
    points = tail["points"]
    fars = np.log10([p[0] for p in points])
    thresholds = np.array([p[1] for p in points])
    x = math.log10(max(far, 1e-300))
    if x >= fars[0]:
        return float(thresholds[0]), False
    if x >= fars[-1]:  # between two measured points: np.interp wants increasing x
        return float(np.interp(x, fars[::-1], thresholds[::-1])), False
    fit = tail["fit"]
    if fit["slope"] >= 0:
        return MAX_THRESHOLD, True
    return float(min(MAX_THRESHOLD, max(thresholds[-1], (x - fit["intercept"]) / fit["slope"]))), True


def per_comparison_far(fpir: float, templates: int) -> float:
    """The per-comparison FAR that keeps a search of ``templates`` templates at ``fpir``."""
    return -math.expm1(math.log1p(-fpir) / max(1, templates))


def search_threshold(tail: dict[str, Any], fpir: float, templates: int) -> dict[str, Any]:
    """The threshold a gallery of ``templates`` needs for ``fpir``, with how it was reached."""
    far = per_comparison_far(fpir, templates)
    threshold, extrapolated = threshold_at(tail, far)
    return {"threshold": threshold, "far_per_comparison": far, "extrapolated": extrapolated}
