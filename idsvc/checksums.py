"""sha256 of a file, read in chunks: model checkpoints, their sidecar cards and the index file are checked with it.
Kept free of heavy imports so that ``status`` and ``doctor`` can use it without torch or faiss."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
