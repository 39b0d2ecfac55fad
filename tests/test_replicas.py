"""Stateless replicas: two `idsvc serve` processes with different homes (no shared local file) serve one gallery from
one PostgreSQL registry, each with its own FAISS index kept in step through the registry's generation token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LFW, free_port

ROOT = Path(__file__).resolve().parent.parent


def serve(home: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "--home", str(home), "serve", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{base}/v1/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{base} never became ready: {log.read_text()[-3000:]}")


@pytest.mark.slow
def test_two_replicas_on_one_postgres_registry(tmp_path, pg_url):
    env = {**os.environ, "IDSVC_DB": pg_url, "IDSVC_VECTORS": "faiss",
           "IDSVC_MODEL": str(ROOT / "data" / "models" / "idsvc-facenet.pt")}
    made = subprocess.run([sys.executable, "-m", "cli.main", "--home", str(tmp_path / "admin"), "--json", "keys",
                           "create", "app", "--scope", "admin"], cwd=ROOT, env=env, capture_output=True, text=True)
    key = json.loads(made.stdout)["key"]
    auth = {"Authorization": f"Bearer {key}"}
    a, base_a = serve(tmp_path / "replica-a", env, tmp_path / "a.log")
    b, base_b = serve(tmp_path / "replica-b", env, tmp_path / "b.log")
    try:
        wait_ready(a, base_a, tmp_path / "a.log")
        wait_ready(b, base_b, tmp_path / "b.log")
        colin = sorted((LFW / "Colin_Powell").glob("*.jpg"))
        probe = [("file", (colin[5].name, colin[5].read_bytes(), "image/jpeg"))]
        before = httpx.post(f"{base_b}/v1/search", headers=auth, files=probe, timeout=120).json()
        assert before["identity"] is None  # B has searched (and cached its index) before the enroll

        enrolled = httpx.post(f"{base_a}/v1/identities/colin/enroll", headers=auth, timeout=120,
                              files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in colin[:3]]).json()
        assert enrolled["accepted"], enrolled
        found = httpx.post(f"{base_b}/v1/search", headers=auth, files=probe, timeout=120).json()
        assert found["identity"] == "colin"  # the very next request through B
        assert {c["template_id"] for c in found["faces"][0]["candidates"]} <= {
            t["template_id"] for t in enrolled["accepted"]}

        assert httpx.delete(f"{base_a}/v1/identities/colin", headers=auth, timeout=60).status_code == 200
        gone = httpx.post(f"{base_b}/v1/search", headers=auth, files=probe, timeout=120).json()
        assert gone["identity"] is None and gone["faces"][0]["candidates"] == []
        for base in (base_a, base_b):
            st = httpx.get(f"{base}/v1/status", headers=auth).json()
            assert st["templates"] == 0 and st["db"].startswith("postgresql")  # (the URL: admin keys only)
        assert not (tmp_path / "replica-a" / "idsvc.db").exists()  # no local registry anywhere
        assert not (tmp_path / "replica-b" / "idsvc.db").exists()
    finally:
        for proc in (a, b):
            proc.terminate()
            proc.wait(timeout=60)
