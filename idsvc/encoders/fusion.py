"""A fused encoder: member encoders' L2-normalised embeddings, each scaled by √(wᵢ / Σw) and concatenated.

So the fused vector has norm 1 and its cosine with another fused vector is the weighted mean of the members'
cosines: ⟨f, f'⟩ = Σ (wᵢ/Σw) ⟨eᵢ, e'ᵢ⟩. Every member takes the same crop and its five landmarks and aligns
its own input from them (FaceNet: idsvc's 160-px template; SFace: the 112-px ArcFace one), so detection, stored
crops and ``reindex --model`` work unchanged; the model version covers every member's version and weight.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from idsvc.encoders.protocol import CardProperties
from idsvc.errors import IdsvcError


def make_card(name: str, members: list[tuple[float, Any]]) -> dict[str, Any]:
    """Card of a fusion of ``(weight, encoder)`` members. Raises ``invalid_argument``."""
    if len(members) < 2 or any(not (w > 0) for w, _ in members):
        raise IdsvcError("invalid_argument", "a fused model needs two or more members with positive weights")
    sizes = {enc.input_size for _, enc in members}
    if len(sizes) != 1:
        raise IdsvcError("invalid_argument", f"members take crops of different sizes {sorted(sizes)}")
    listed = [{"name": enc.card["name"], "version": enc.version, "weight": float(w)} for w, enc in members]
    digest = hashlib.sha256(json.dumps(listed, sort_keys=True).encode()).hexdigest()
    return {"name": name, "arch": "fused", "kind": "fused", "members": listed,
            "embedding_size": int(sum(enc.dim for _, enc in members)),
            "preprocessing": {"input_size": sizes.pop(), "members": [m["version"] for m in listed]},
            "weights_sha256": digest, "source": "fusion of " + ", ".join(m["name"] for m in listed),
            "training": {}, "lfw": {}, "threshold": None,
            # Each member's provenance and licence travels with the fusion: users must see both.
            "notes": " | ".join(f"{enc.card['name']} (weight {w:g}): {enc.card.get('source', '')}"
                                for w, enc in members)}


class FusedEncoder(CardProperties):
    def __init__(self, members: list[tuple[float, Any]], card: dict[str, Any], path: Path | None = None) -> None:
        total = sum(w for w, _ in members)
        self.members = [(float(np.sqrt(w / total)), enc) for w, enc in members]
        self.card, self.path = card, path
        self.device = ", ".join(sorted({str(enc.device) for _, enc in members}))

    def embed(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 → (N, Σ Dᵢ) float32 with norm 1 (each member's part scaled by √(wᵢ/Σw)); each
        member prepares its own input from the crop and its landmarks."""
        parts = [scale * enc.embed(crops, landmarks) for scale, enc in self.members]
        return np.concatenate(parts, axis=1).astype(np.float32)
