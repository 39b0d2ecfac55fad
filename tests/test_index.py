"""Every index kind against the exact numpy oracle; deletes; atomic save/load; corruption is detected."""

from __future__ import annotations

import numpy as np
import pytest

from idsvc.errors import IdsvcError
from idsvc.storage.faiss_index import FaissIndex, IndexParams, exact_search


def _data(n=4000, d=64, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((40, d))
    x = centers[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, d))  # clustered, like faces
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x, np.arange(100, 100 + n, dtype=np.int64)


@pytest.mark.parametrize("kind, min_recall", [("flat", 1.0), ("ivf-flat", 0.9), ("ivf-pq", 0.5), ("hnsw", 0.9)])
def test_kinds_against_exact_search(kind, min_recall):
    x, ids = _data()
    q = x[:100] + 0.05
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    _, exact = exact_search(x, ids, q, 10)
    ix = FaissIndex.create(kind, 64, IndexParams(nprobe=8, pq_m=16), train=x)
    ix.add(ids, x)
    scores, got = ix.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact)])
    assert recall >= min_recall
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # scores descend


@pytest.mark.parametrize("kind", ["flat", "ivf-flat", "hnsw"])
def test_delete_and_persist(kind, tmp_path):
    x, ids = _data(2000)
    ix = FaissIndex.create(kind, 64, train=x)
    ix.add(ids, x)
    assert ix.remove(ids[:10]) == 10
    _, got = ix.search(x[:10], 5)
    assert not np.isin(got, ids[:10]).any()
    assert ix.ntotal == 1990
    ix.save(tmp_path, "m1")
    back, manifest = FaissIndex.load(tmp_path)
    assert manifest["count"] == 1990 and manifest["model_version"] == "m1"
    assert np.array_equal(back.ids(), ids[10:])
    _, got2 = back.search(x[:10], 5)
    assert not np.isin(got2, ids[:10]).any()


def test_corrupt_or_missing_index_is_detected(tmp_path):
    x, ids = _data(500)
    ix = FaissIndex.create("flat", 64)
    ix.add(ids, x)
    ix.save(tmp_path, "m1")
    data = (tmp_path / "index.faiss").read_bytes()
    (tmp_path / "index.faiss").write_bytes(data[:-100])
    with pytest.raises(IdsvcError) as err:
        FaissIndex.load(tmp_path)
    assert err.value.code == "index_corrupt"
    (tmp_path / "index.faiss").unlink()
    with pytest.raises(IdsvcError):
        FaissIndex.load(tmp_path)


def test_fewer_vectors_than_k_and_empty_index():
    ix = FaissIndex.create("flat", 8)
    s, i = ix.search(np.ones((1, 8), np.float32), 3)
    assert (i == -1).all()
    ix.add(np.array([5]), np.eye(8, dtype=np.float32)[:1])
    s, i = ix.search(np.eye(8, dtype=np.float32)[:1], 3)
    assert i[0].tolist() == [5, -1, -1] and s[0, 0] == pytest.approx(1.0)
