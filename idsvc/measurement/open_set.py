"""Open-set identification (1:N) on embeddings: a gallery, mated probes and non-mated probes, and the rates a search
makes at each threshold — FNIR (a mated probe not answered with its identity) and FPIR (a non-mated probe answered
with anyone). Both depend on the gallery's size, which is reported with them."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from idsvc.errors import IdsvcError


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
