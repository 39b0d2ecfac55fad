"""`idsvc migrate`: an embedded home (SQLite + FAISS) of 1,000 templates copied to PostgreSQL + Milvus Lite, killed
once part-way, resumed; the copy answers every probe with the same identity and template, and the source is
untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from idsvc.checksums import file_sha256
from idsvc.settings import load_settings
from idsvc.storage.registry import NewTemplate
from tests.conftest import lfw_people, search_one

ROOT = Path(__file__).resolve().parent.parent


def template_count(url: str) -> int:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(dsn) as conn:
            return conn.execute("select count(*) from templates").fetchone()[0]  # type: ignore[index]
    except psycopg.Error:  # the tables do not exist yet
        return 0


@pytest.mark.slow
@pytest.mark.embedded_only
def test_migrate_is_resumable_and_keeps_every_answer(tmp_path, photos, make_service, pg_url):
    source = make_service(load_settings(home=tmp_path / "source", device="cpu"))
    people = lfw_people(min_photos=3, count=10)
    probes = []
    for name, _ in people:
        got = photos("lfw", name, 1, 2, 3)
        source.enroll(name, [str(p) for p in got[:2]])
        probes.append(str(got[2]))
    real = source.status().templates
    rng = np.random.default_rng(0)
    filler = rng.standard_normal((1000 - real, source.home.model.dim)).astype(np.float32)
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    version = source.home.model.version
    for start in range(0, len(filler), 100):  # other identities (vectors only: the contract is about the copy)
        source.home.registry.add_templates(f"filler-{start}", [NewTemplate(
            embedding=v, model_version=version, image_sha256=f"filler-{start + i}", source_path="-", box=[0, 0, 1, 1],
            landmarks=[[0, 0]] * 5, det_prob=1.0, quality=1.0) for i, v in enumerate(filler[start:start + 100])])
    source.reindex()
    assert source.status().templates == 1000

    def answers(svc) -> list[tuple[str | None, int | None]]:
        out = []
        for p in probes:
            r = search_one(svc, p, top_k=1)
            best = r.faces[0].candidates[0] if r.faces[0].candidates else None
            out.append((r.identity, best.template_id if best else None))
        return out

    before = answers(source)
    assert sum(1 for name, _ in before if name) >= 8  # the real people are found
    source_ids = source.home.registry.template_ids().tolist()
    source_manifest = file_sha256(source.home.index.directory() / "manifest.json")

    milvus = tmp_path / "milvus.db"
    cmd = [sys.executable, "-m", "cli.main", "--home", str(tmp_path / "source"), "--json", "migrate", "--to-db",
           pg_url, "--to-vectors", f"milvus://{milvus}", "--to-home", str(tmp_path / "target"), "--batch", "20"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while template_count(pg_url) == 0 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    part = template_count(pg_url)
    assert 0 < part < 1000, f"the kill did not land mid-copy ({part} templates copied)"

    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["templates"] == 1000 and doc["vectors"] == 1000 and doc["copied_now"] == 1000 - part
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert json.loads(again.stdout).get("copied_now") == 0, again.stdout + again.stderr[-2000:]  # left as it is

    target = make_service(load_settings(home=tmp_path / "target", device="cpu", db=pg_url,
                                        vectors=f"milvus://{milvus}"))
    assert answers(target) == before
    st = target.status()
    assert st.templates == 1000 and st.index.in_agreement and st.index.kind == "milvus"
    new = target.enroll("newcomer", [str(photos("lfw", lfw_people(3, 1, offset=50)[0][0], 1)[0])])
    assert new.accepted[0].template_id > max(source_ids)  # the id sequence continues past the copied ids
    assert source.home.registry.template_ids().tolist() == source_ids  # the source is untouched
    assert file_sha256(source.home.index.directory() / "manifest.json") == source_manifest
