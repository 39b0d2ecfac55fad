"""The index's manifest (``manifest.json`` beside the FAISS file): what the index holds, readable without faiss.

``status`` compares it with the registry to say whether the index agrees without loading the index (so it never
imports faiss); loading, searching and ``doctor`` compare the index itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST_FILE = "manifest.json"


def ids_checksum(ids: np.ndarray) -> str:
    """Order-free checksum of template ids (the manifest's ``ids_sha256``)."""
    return hashlib.sha256(np.sort(np.asarray(ids, dtype="<i8")).tobytes()).hexdigest()


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest in ``directory``, or None when it is missing or unreadable."""
    try:
        return json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
