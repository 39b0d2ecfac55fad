"""One contract for every vector store: the same tests run on FAISS (embedded files) and Milvus Lite (embedded, via
pymilvus), with exact numpy search as the oracle — add, delete, search, count, rebuild from the registry, model-version
isolation, top-k ties, and catching up with writes made through another home on the same registry.

The vectors here are random unit vectors, not faces: the contract is about the store, and 2,000 of them cost
nothing to make."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from idsvc.home import Home
from idsvc.settings import load_settings
from idsvc.storage.faiss_index import exact_search
from idsvc.storage.registry import NewTemplate

DIM = 256  # the shipped model's; the store takes its dimension from the active model's card


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(params=["faiss", "milvus"])
def make_home(request, tmp_path: Path):
    """Homes on one registry (SQLite file, or PostgreSQL under IDSVC_TEST_BACKEND) with the backend under test; each
    home has its own vector store (its own files or its own Milvus Lite file)."""
    homes: list[Home] = []

    def make(name: str = "a") -> Home:
        vectors = "faiss" if request.param == "faiss" else f"milvus://{tmp_path / f'milvus-{name}.db'}"
        db = homes[0].settings.db_url if homes else None
        home = Home(load_settings(home=tmp_path / f"home-{name}", device="cpu", vectors=vectors, db=db))
        homes.append(home)
        return home

    yield make
    for home in homes:
        home.close()


def enroll(home: Home, name: str, vecs: np.ndarray, version: str | None = None, tag: str = "") -> list[int]:
    version = version or home.model.version
    items = [NewTemplate(embedding=v, model_version=version, image_sha256=f"{name}{tag}-{i}", source_path=f"{i}.jpg",
                         box=[0, 0, 1, 1], landmarks=[[0, 0]] * 5, det_prob=1.0, quality=1.0)
             for i, v in enumerate(vecs)]
    if version != home.model.version:
        return home.registry.add_templates(name, items)
    with home.lock.hold():  # as enroll does: open, commit to the registry, add, save
        index = home.index.open().index
        ids = home.registry.add_templates(name, items)
        index.add(np.array(ids), vecs)
        home.index.save(index)
    return ids


def test_add_search_count_remove_against_exact_search(make_home):
    home = make_home()
    x = unit(2000, 0)
    ids = np.array(enroll(home, "many", x))
    index = home.index.open().index
    assert index.ntotal == 2000 and np.array_equal(index.ids(), np.sort(ids))
    q = unit(20, 1)
    scores, got = index.search(q, 10)
    exact_scores, exact_ids = exact_search(x, ids, q, 10)
    assert np.array_equal(got, exact_ids)
    assert np.allclose(scores, exact_scores, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    assert index.remove(ids[:100]) == 100
    assert index.ntotal == 1900 and not set(ids[:100].tolist()) & set(index.ids().tolist())
    _, after = index.search(x[:5], 3)
    assert not set(after.ravel().tolist()) & set(ids[:100].tolist())


def test_rebuild_from_the_registry_and_model_version_isolation(make_home):
    home = make_home()
    mine = enroll(home, "mine", unit(50, 2))
    other = enroll(home, "old model", unit(30, 3), version="some-older-model-0001")  # registry only
    home.index.save(home.index.build())
    index = home.index.open().index
    assert np.array_equal(index.ids(), np.array(sorted(mine)))
    assert not set(other) & set(index.ids().tolist())
    _, got = index.search(unit(1, 3), 10)  # a query near the other model's vectors still finds only this one's
    assert set(got[0].tolist()) <= set(mine)
    manifest, problems = home.index.check_manifest()
    assert manifest is not None and manifest["count"] == 50 and problems == []


def test_top_k_ties_and_short_results(make_home):
    home = make_home()
    v = unit(1, 4)
    # Identical vectors under three ids (the same image cannot be enrolled twice, so three hashes).
    ids = enroll(home, "twins", np.repeat(v, 3, axis=0))
    rest = enroll(home, "others", unit(5, 5))
    index = home.index.open().index
    scores, got = index.search(v, 2)
    assert set(got[0].tolist()) <= set(ids) and np.allclose(scores[0], 1.0, atol=1e-5)
    scores, got = index.search(v, 20)  # more than there are: padded with -1 and -inf
    assert set(got[0][:8].tolist()) == set(ids + rest) and (got[0][8:] == -1).all()
    assert np.isneginf(scores[0][8:]).all()


def test_a_second_home_on_the_same_registry_catches_up(make_home):
    """Replicas: home B has its own vector store; writes through home A reach B's next open."""
    a, b = make_home("a"), make_home("b")
    first = enroll(a, "alice", unit(10, 6))
    assert np.array_equal(b.index.open().index.ids(), np.array(sorted(first)))
    more = enroll(a, "bob", unit(5, 7))
    assert set(b.index.open().index.ids().tolist()) == set(first + more)
    agreed = a.index.agreed_ids()
    a.registry.delete_identity("alice")
    a.index.delete_vectors(agreed)
    assert set(b.index.open().index.ids().tolist()) == set(more)
    _, problems = b.index.check_manifest()
    assert problems == [] or b.settings.vectors == "faiss"  # FAISS: B's saved files catch up at its next write


def test_a_reopened_store_serves_what_was_saved(make_home):
    """A new client on the same store (as a restarted process sees it: Milvus Lite starts collections released)."""
    home = make_home()
    ids = enroll(home, "kept", unit(40, 8))
    home.close()
    again = Home(home.settings)
    try:
        index = again.index.open(repair=False).index
        assert np.array_equal(index.ids(), np.array(sorted(ids)))
        _, got = index.search(unit(40, 8)[:3], 1)
        assert got[:, 0].tolist() == ids[:3]
    finally:
        again.close()


def test_doctor_finds_a_disagreement_and_repairs_it(make_home):
    """A vector lost behind idsvc's back (deleted straight from the store): doctor names it, --fix rebuilds."""
    from idsvc.jobs.doctor import doctor

    home = make_home()
    ids = enroll(home, "checked", unit(12, 9))
    index = home.index.open().index
    index.remove(ids[:2])
    if home.settings.vectors == "faiss":  # Milvus has the delete already; FAISS writes it, unverified
        home.index.save(index, verify=False)
    report = doctor(home)
    index_problems = [p for p in report.problems if p.check not in ("crops",)]  # no crops: vectors only here
    assert index_problems and not report.ok
    fixed = doctor(home, fix=True)
    assert "index rebuilt from the registry" in fixed.fixed
    assert [p for p in fixed.remaining if p.check != "crops"] == []
    assert np.array_equal(home.index.open().index.ids(), np.array(sorted(ids)))


def test_a_commit_the_store_never_saw_is_behind_not_damage(make_home):
    """A writer killed between its registry commit and its vector write: the store is "behind" (a note doctor
    reports, not a problem), the next open catches it up; a vector lost without a later commit stays a problem."""
    from idsvc.jobs.doctor import doctor
    from idsvc.storage.vectors import BEHIND

    home = make_home()
    enroll(home, "first", unit(3, 11))
    vecs = unit(2, 12)
    home.registry.add_templates("second", [NewTemplate(embedding=v, model_version=home.model.version,
                                                       image_sha256=f"k{i}", source_path=f"{i}.jpg", box=[0, 0, 1, 1],
                                                       landmarks=[[0, 0]] * 5, det_prob=1.0, quality=1.0)
                                           for i, v in enumerate(vecs)])  # committed; the store never told
    _, found = home.index.check_manifest()
    assert [p["check"] for p in found] == [BEHIND]
    report = doctor(home)
    assert [p for p in report.problems if p.check != "crops"] == []  # (no crops: vectors only here)
    assert [n.check for n in report.notes] == [BEHIND]
    assert len(home.index.open().index.ids()) == 5  # caught up on open
    assert home.index.check_manifest()[1] == []


def test_template_owners_follow_renames_and_deletes_made_elsewhere(make_home):
    """Search maps template ids to identities in memory; a rename or delete through another home is seen at once."""
    from idsvc.jobs.search import rank

    a, b = make_home("a"), make_home("b")
    v = unit(6, 10)
    ids = enroll(a, "alice", v[:3]) + enroll(a, "bob", v[3:])
    top = rank(a, a.index.open(), v[0], 2, 0.0)
    assert [c.name for c in top] == ["alice", "bob"] and top[0].template_id == ids[0]
    b.registry.rename("alice", "carol")
    assert [c.name for c in rank(a, a.index.open(), v[0], 2, 0.0)] == ["carol", "bob"]
    agreed = b.index.agreed_ids()
    b.registry.delete_identity("bob")
    b.index.delete_vectors(agreed)
    assert [c.name for c in rank(a, a.index.open(), v[3], 2, 0.0)] == ["carol"]


def test_ranking_widens_past_one_identitys_many_templates(make_home):
    """Search asks the store for 8·top_k + 32 templates; when one identity holds all of them, it asks for more until
    it has top_k identities, each at its best template's score."""
    from idsvc.jobs.search import rank

    home = make_home()
    q = unit(1, 20)[0]
    near = q + 0.05 * unit(60, 21)  # 60 templates of alice, all closer to the query than bob's one
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    far = q + 0.6 * unit(1, 22)
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    alice = enroll(home, "alice", near)
    (bob,) = enroll(home, "bob", far)
    top = rank(home, home.index.open(), q, 2, 0.0)
    assert [c.name for c in top] == ["alice", "bob"]
    best = int(np.argmax(near @ q))
    assert top[0].template_id == alice[best] and top[0].score == pytest.approx(float(near[best] @ q), abs=1e-5)
    assert top[1].template_id == bob and top[1].score < min(near @ q)
