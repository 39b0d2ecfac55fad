"""``idsvc embed``: the embedding of each photo's main face — exactly the vector search would compute for it — for
use outside idsvc (deepface's ``represent``). Written as ``.npy`` with a JSON sidecar naming the photos and the
model version (embeddings of different versions must never be compared), or as JSON lines."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from idsvc.errors import IdsvcError
from idsvc.faces.images import ImageInput, source_name
from idsvc.home.pipeline import Pipeline


def embed_each(pipeline: Pipeline, files: Sequence[ImageInput], *, aligned: bool = False,
               ) -> Iterator[tuple[str, np.ndarray | None, dict[str, Any] | None]]:
    """(photo's name, its main face's embedding or None, the error or None), photo by photo; a photo is a path or
    an upload's (bytes, name)."""
    for f in files:
        try:
            fc = pipeline.one_face(pipeline.read(f), strict=False, given_aligned=aligned)
            yield source_name(f), pipeline.embed([fc.aligned])[0], None
        except IdsvcError as exc:
            yield source_name(f), None, {"code": exc.code, "message": exc.message}


def write_npy(pipeline: Pipeline, version: str, files: list[Path], out: Path, *, aligned: bool = False,
              progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """``out`` (N, D) float32 rows for the photos with a face, and ``out.json``: model version and, per photo, its
    row or its error. Both are written to temporary names and renamed, so a failed run leaves no half file."""
    if out.suffix != ".npy":
        raise IdsvcError("invalid_argument", f"{out}: the output must end in .npy (or use --jsonl)")
    rows: list[np.ndarray] = []
    entries: list[dict[str, Any]] = []
    for f, vec, err in embed_each(pipeline, files, aligned=aligned):
        if vec is None:
            entries.append({"path": f, "row": None, "error": err})
        else:
            entries.append({"path": f, "row": len(rows)})
            rows.append(vec)
        if progress:
            progress(1)
    dim = pipeline.encoder.dim if pipeline.encoder else 0
    matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    sidecar = {"model_version": version, "dim": int(matrix.shape[1]), "rows": len(rows), "photos": entries}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, matrix)
        side = out.with_name(out.name + ".json")
        side_tmp = side.with_name(side.name + ".tmp")
        side_tmp.write_text(json.dumps(sidecar, indent=1) + "\n")
        os.replace(tmp, out)
        os.replace(side_tmp, side)
    except OSError as exc:
        raise IdsvcError("invalid_argument", f"cannot write {out}: {exc.strerror}") from None
    return {"path": str(out), "sidecar": str(side), **{k: v for k, v in sidecar.items() if k != "photos"},
            "errors": [e for e in entries if e["row"] is None]}
