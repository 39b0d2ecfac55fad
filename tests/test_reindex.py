"""Nightly re-index, model upgrades and doctor, with real processes killed half-way."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock, Timeout
from typer.testing import CliRunner

from cli.main import app
from idsvc.storage.faiss_index import FaissIndex
from tests.conftest import lfw_people, permuted_model

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def idsvc(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args], catch_exceptions=False)


def spawn(home: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.main", "--home", str(home), "-q", *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def enroll_people(service, photos, count: int) -> dict[str, Path]:
    """Enroll ``count`` LFW people (all but one photo each); returns {name: held-out photo}."""
    probes = {}
    for name, n in lfw_people(min_photos=3, count=count, offset=30):
        *gallery, probe = photos("lfw", name, *range(1, min(n, 5) + 1))
        service.enroll(name, [str(p) for p in gallery])
        probes[name] = probe
    return probes


def bulk_templates(db: Path, n: int, version: str, dim: int) -> None:
    """n synthetic unit vectors under one identity, straight into the registry, so that a rebuild takes seconds."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype("<f4")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    con = sqlite3.connect(db)
    con.execute("insert into identities(name, metadata, created_at) values ('bulk', '{}', '2026-01-01')")
    iid = con.execute("select id from identities where name='bulk'").fetchone()[0]
    con.executemany(
        "insert into templates(identity_id, embedding, dim, model_version, image_sha256, source_path, box, landmarks,"
        " det_prob, quality, quality_details, created_at) values (?, ?, ?, ?, ?, 'bulk', '[]', '[]', 1, 1, '{}',"
        " '2026-01-01')", ((iid, x[i].tobytes(), dim, version, f"bulk{i:060d}") for i in range(n)))
    con.commit()
    con.close()


@pytest.mark.slow
def test_killed_reindex_keeps_the_old_index_and_a_second_run_is_refused(service, photos, settings):
    probes = enroll_people(service, photos, 3)
    bulk_templates(settings.home / "idsvc.db", 60_000, service.home.model.version, service.home.model.dim)
    service.reindex()  # flat index with everything: the "old" index
    manifest = (service.home.index.directory() / "manifest.json").read_bytes()

    slow = spawn(settings.home, "reindex", "--kind", "hnsw")  # an HNSW build of 60k vectors takes a while here
    lock = settings.home / "write.lock"
    deadline = time.time() + 120
    while time.time() < deadline and slow.poll() is None:  # wait until the spawned reindex holds the write lock
        try:
            with FileLock(str(lock)).acquire(timeout=0):
                pass
        except Timeout:
            break
        time.sleep(0.05)
    second = idsvc(settings.home, "reindex")
    assert second.exit_code == 4 and "another idsvc process is writing" in second.stderr
    assert slow.poll() is None
    slow.send_signal(signal.SIGKILL)
    slow.wait()

    assert (service.home.index.directory() / "manifest.json").read_bytes() == manifest  # the old index is untouched
    name, probe = next(iter(probes.items()))
    r = json.loads(idsvc(settings.home, "--json", "search", str(probe)).stdout)
    # The old index answers: the right person first. (Whether it is a match depends on the threshold, which a search
    # sizes for its 60,000 templates.)
    assert r["faces"][0]["candidates"][0]["name"] == name and r["gallery"]["templates"] > 60_000
    st = json.loads(idsvc(settings.home, "--json", "status").stdout)
    assert st["index"]["in_agreement"]

    done = idsvc(settings.home, "--json", "reindex")
    assert done.exit_code == 0 and json.loads(done.stdout)["vectors"] == st["templates"]
    assert lock.exists()


@pytest.mark.slow
def test_model_upgrade_killed_and_resumed(service, photos, settings, tmp_path):
    probes = enroll_people(service, photos, 8)
    old = service.home.model.version
    total = service.status().templates
    new_path = tmp_path / "new.pt"
    new = permuted_model(new_path)
    assert new != old

    db = settings.home / "idsvc.db"
    proc = spawn(settings.home, "reindex", "--model", str(new_path), env={"IDSVC_BATCH_SIZE": "1"})
    deadline = time.time() + 120
    pending = 0
    while time.time() < deadline and proc.poll() is None:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        pending = con.execute("select count(*) from pending_embeddings").fetchone()[0]
        con.close()
        if pending >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= pending < total

    # Killed half-way: nothing switched; the old model still answers.
    st = json.loads(idsvc(settings.home, "--json", "status").stdout)
    assert st["model"]["version"] == old and st["templates"] == total and st["index"]["in_agreement"]
    name, probe = next(iter(probes.items()))
    assert json.loads(idsvc(settings.home, "--json", "search", str(probe)).stdout)["identity"] == name

    r = idsvc(settings.home, "--json", "reindex", "--model", str(new_path))
    assert r.exit_code == 0, r.stderr
    up = json.loads(r.stdout)["upgrade"]
    assert up["to"] == new and up["resumed_from"] >= 3 and up["templates"] == total
    assert up["re_embedded"] + up["resumed_from"] == total

    st = json.loads(idsvc(settings.home, "--json", "status").stdout)
    assert st["model"]["version"] == new and st["templates_other_models"] == {} and st["index"]["in_agreement"]
    con = sqlite3.connect(db)
    assert con.execute("select count(*) from templates where model_version != ?", (new,)).fetchone()[0] == 0
    hits = sum(json.loads(idsvc(settings.home, "--json", "search", str(p)).stdout)["identity"] == n
               for n, p in probes.items())
    assert hits >= len(probes) - 1
    # The old model, asked explicitly, has nothing left to compare against.
    r = idsvc(settings.home, "--model", str(settings.model), "--json", "verify", str(probe), "--identity", name)
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "model_mismatch"


@pytest.mark.parametrize("damage", ["deleted_index", "extra_vector", "missing_vector"])
def test_doctor_finds_and_fixes(service, photos, settings, damage):
    enroll_people(service, photos, 3)
    d = service.home.index.directory()
    if damage == "deleted_index":
        (d / "index.faiss").unlink()
    else:
        index, _ = FaissIndex.load(d)
        if damage == "extra_vector":
            index.add(np.array([999_999]), np.ones((1, index.dim), np.float32) / np.sqrt(index.dim))
        else:
            index.remove(index.ids()[:1])
        index.save(d, service.home.model.version)
    found = idsvc(settings.home, "--json", "doctor")
    assert found.exit_code == 1
    problems = {p["check"]: p["problem"] for p in json.loads(found.stdout)["problems"]}
    n = service.status().templates
    assert {"deleted_index": "index file missing", "extra_vector": f"({n + 1} vectors, {n} templates)",
            "missing_vector": f"({n - 1} vectors, {n} templates)"}[damage] in " ".join(problems.values())
    fixed = idsvc(settings.home, "--json", "doctor", "--fix")
    assert fixed.exit_code == 0 and json.loads(fixed.stdout)["ok"]
    assert idsvc(settings.home, "doctor").exit_code == 0
