"""The evaluation cache: embeddings of whole photos keyed by (image sha256, model version and recipe), so a re-run of
``eval`` or ``calibrate`` embeds only new photos. Disposable: deleting it costs only time."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


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
