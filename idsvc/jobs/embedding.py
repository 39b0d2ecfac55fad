"""``idsvc embed``: the embedding of each photo's main face — exactly the vector search would compute for it — for
use outside idsvc (deepface's ``represent``). Written as ``.npy`` with a JSON sidecar naming the photos and the
model version (embeddings of different versions must never be compared), or as JSON lines."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from idsvc.errors import IdsvcError
from idsvc.faces.images import ImageInput, gather, source_name
from idsvc.home import Home
from idsvc.results import Each, Embedding, EmbeddingRow, EmbeddingsFile, ItemError

if TYPE_CHECKING:
    from idsvc.home.pipeline import Pipeline


def embed(home: Home, images: Sequence[ImageInput], *, aligned: bool = False) -> Each[Embedding]:
    """Each photo's main-face embedding with the model version, as each finishes (a photo without one carries its
    error). Paths are checked at once, before any model loads. Raises ``file_not_found``."""
    photos = gather(images)
    return Each(len(photos), _embeddings(home, photos, aligned))


def _embeddings(home: Home, photos: list[ImageInput], aligned: bool) -> Iterator[Embedding]:
    version = home.model.version
    for name, found in _vectors(home.model.pipeline, photos, aligned):
        yield (Embedding(path=name, model_version=version, error=ItemError.of(found))
               if isinstance(found, IdsvcError) else
               Embedding(path=name, model_version=version, embedding=[round(float(x), 7) for x in found]))


def _vectors(pipeline: Pipeline, files: Sequence[ImageInput], aligned: bool,
             ) -> Iterator[tuple[str, np.ndarray | IdsvcError]]:
    """(photo's name, its main face's embedding or why there is none), photo by photo."""
    for f in files:
        try:
            fc = pipeline.one_face(pipeline.read(f), strict=False, given_aligned=aligned)
            yield source_name(f), pipeline.embed([fc.aligned])[0]
        except IdsvcError as exc:
            yield source_name(f), exc


def save(home: Home, images: Sequence[ImageInput], out: Path, *, aligned: bool = False,
         progress: Callable[..., None] | None = None) -> EmbeddingsFile:
    """``out`` (N, D) float32 rows for the photos with a face, and ``out.json``: model version and, per photo, its
    row or its error. Both are written to temporary names and renamed, so a failed run leaves no half file.
    Raises ``invalid_argument`` (not a .npy name, cannot write) and ``file_not_found``."""
    if out.suffix != ".npy":
        raise IdsvcError("invalid_argument", f"{out}: the output must end in .npy (or use --jsonl)")
    files = gather(images)
    if progress:
        progress(0, total=len(files))
    pipeline = home.model.pipeline
    rows: list[np.ndarray] = []
    entries: list[EmbeddingRow] = []
    for f, found in _vectors(pipeline, files, aligned):
        if isinstance(found, IdsvcError):
            entries.append(EmbeddingRow(path=f, row=None, error={"code": found.code, "message": found.message}))
        else:
            entries.append(EmbeddingRow(path=f, row=len(rows)))
            rows.append(found)
        if progress:
            progress(1)
    matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, home.model.dim), np.float32)
    version, dim = home.model.version, int(matrix.shape[1])
    sidecar = {"model_version": version, "dim": dim, "rows": len(rows), "photos": [e.document() for e in entries]}
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
    return EmbeddingsFile(path=str(out), sidecar=str(side), model_version=version, dim=dim, rows=len(rows),
                          errors=[e for e in entries if e.row is None])
