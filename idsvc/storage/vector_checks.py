"""Stored vectors that search can use: the model's dimension, finite, unit norm.

Every vector idsvc writes is one (the encoders L2-normalise), but a registry can also be fed from outside — an
archive, a hand-edited database, a half-written disk — and one short or NaN vector used to make every later search
fail with a numpy error, or answer "score nan". Reads check each batch as they turn bytes into a matrix and refuse
with ``vectors_invalid`` naming the templates; ``doctor`` lists every such template and ``--fix`` re-embeds it from
its crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from idsvc.errors import IdsvcError

NORM_TOLERANCE = 1e-3  # float32 L2-normalised vectors are within 1e-6 of unit norm


def vector_problems(ids: Sequence[int], blobs: Sequence[bytes], dim: int) -> list[tuple[int, str]]:
    """``[(template id, what is wrong)]`` for the vectors (little-endian float32 bytes) that are not usable."""
    out: list[tuple[int, str]] = []
    for tid, blob in zip(ids, blobs):
        if len(blob) != 4 * dim:
            out.append((int(tid), f"{len(blob) / 4:g} values, not {dim}"))
            continue
        v = np.frombuffer(blob, dtype="<f4")
        if not np.isfinite(v).all():
            out.append((int(tid), "values that are not finite"))
            continue
        norm = float(np.linalg.norm(v.astype(np.float64)))
        if abs(norm - 1.0) > NORM_TOLERANCE:
            out.append((int(tid), f"norm {norm:.4g}, not 1"))
    return out


def as_matrix(ids: Sequence[int], blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """(n, dim) float32 from the stored bytes. Raises ``vectors_invalid`` naming the first bad template."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    if any(len(b) != 4 * dim for b in blobs):
        raise invalid(vector_problems(ids, blobs, dim))
    m = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", m, m))  # float32 is ample for a 1e-3 tolerance; no float64 copy
    if not (np.isfinite(norms).all() and (np.abs(norms - 1.0) <= NORM_TOLERANCE).all()):
        raise invalid(vector_problems(ids, blobs, dim))
    return m


def invalid(problems: list[tuple[int, str]]) -> IdsvcError:
    tid, what = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return IdsvcError("vectors_invalid", f"template {tid} has a stored vector with {what}{more}; "
                      "run `idsvc doctor --fix` to re-embed it from its crop", ids=[p[0] for p in problems[:20]])
