"""The registry on a real SQLite file and on a real PostgreSQL server (a throwaway cluster the tests start): Alembic
up and down, WAL, foreign keys, the schema matching the tables, ids never reused, one transaction per write."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import inspect

from idsvc.errors import IdsvcError
from idsvc.storage.registry import NewTemplate, Registry, head_revision, make_engine, migrate
from idsvc.storage.schema import metadata


def _tpl(sha: str, v: str = "m1") -> NewTemplate:
    e = np.random.default_rng(len(sha)).standard_normal(128).astype(np.float32)
    return NewTemplate(embedding=e / np.linalg.norm(e), model_version=v, image_sha256=sha, source_path=f"{sha}.jpg",
                       box=[0, 0, 10, 10], landmarks=[[1, 2]] * 5, det_prob=0.99, quality=0.8)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'r.db'}"
    return request.getfixturevalue("pg_url")


def test_alembic_upgrades_empty_db_to_head_and_back(db_url):
    engine = make_engine(db_url)
    assert migrate(engine, "head") == head_revision()
    insp = inspect(engine)
    assert set(insp.get_table_names()) == set(metadata.tables) | {"alembic_version"}
    for name, table in metadata.tables.items():  # migrations create exactly the tables the code uses
        assert {c["name"] for c in insp.get_columns(name)} == {c.name for c in table.columns}
    assert migrate(engine, "base", down=True) == "base"
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}


@pytest.mark.embedded_only
def test_new_database_is_migrated_on_first_use_with_wal_and_foreign_keys(tmp_path):
    r = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    assert r.schema_revision() == head_revision()
    with r.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_templates_identities_and_delete(db_url):
    r = Registry(db_url)
    ids = r.add_templates("alice", [_tpl("a1"), _tpl("a2")])
    r.add_templates("bob", [_tpl("b1")])
    assert r.counts()["templates"] == 3
    assert r.enrolled_shas(["a1", "b1", "zz"]) == {"a1": "alice", "b1": "bob"}
    got = dict(zip(*next(r.iter_embeddings("m1", 128))))
    assert np.allclose(got[ids[0]], _tpl("a1").embedding)
    removed, _ = r.delete_identity("alice")
    assert sorted(removed) == sorted(ids)
    with pytest.raises(IdsvcError) as err:
        r.identity("alice")
    assert err.value.code == "identity_not_found"
    with r.engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from templates where identity_id not in "
                                    "(select id from identities)").scalar() == 0
    # Ids are never reused, so a stale index can never point a new template at an old vector.
    new = r.add_templates("carol", [_tpl("c1")])
    assert new[0] > max(ids)


def test_same_image_twice_is_refused_and_nothing_half_written(db_url):
    r = Registry(db_url)
    r.add_templates("alice", [_tpl("a1")])
    with pytest.raises(IdsvcError):
        r.add_templates("bob", [_tpl("b1"), _tpl("a1")])
    assert [i.name for i in r.identities()] == ["alice"]  # bob and b1 rolled back with the failed batch
    assert r.counts()["templates"] == 1


def test_several_identities_in_one_transaction_store_together_or_not_at_all(db_url):
    """An enroll flush across people folders is one transaction: each group's ids come back in order, and a
    failure in a later identity takes the earlier ones (and their crops' paths) back with it."""
    r = Registry(db_url)
    written: list[list[int]] = []
    groups = r.add_templates_many([("bob", [_tpl("b1"), _tpl("b2")]), ("carol", [_tpl("c1")])],
                                  store_crops=lambda ids: written.append(ids) or {i: f"/crops/{i}.png" for i in ids})
    assert [len(g) for g in groups] == [2, 1] and written == [groups[0] + groups[1]]
    assert r.enrolled_shas(["b1", "b2", "c1"]) == {"b1": "bob", "b2": "bob", "c1": "carol"}
    assert [t.crop_path for t in r.templates_of("carol")] == [f"/crops/{groups[1][0]}.png"]
    with pytest.raises(IdsvcError) as err:
        r.add_templates_many([("dave", [_tpl("d1")]), ("erin", [_tpl("e1"), _tpl("b1")])])
    assert err.value.code == "already_enrolled"
    assert sorted(i.name for i in r.identities()) == ["bob", "carol"]  # dave went back with erin
    assert r.counts()["templates"] == 3


def test_thresholds_are_per_model_version(db_url):
    r = Registry(db_url)
    r.save_threshold("m1", 0.5, "far", 1e-3, "h", 10, 10, {})
    r.save_threshold("m1", 0.55, "far", 1e-3, "h2", 10, 10, {})
    assert r.threshold("m1").value == 0.55
    assert r.threshold("m2") is None
