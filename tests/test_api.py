"""The real HTTP API with real photos and real keys: the default tier runs uvicorn on 127.0.0.1 in a thread of the
test process (sharing the loaded models); the slow tier runs `idsvc serve` as a subprocess beside the CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from idsvc.settings import load_settings
from tests.conftest import CELEBA, SAMPLES, free_port, make_keys, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def client(server: dict[str, Any], scope: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server['keys'][scope]}"} if scope else {}
    return httpx.Client(base_url=server["base"], headers=headers, timeout=120)


def files(*paths: Path, field: str = "files") -> list:
    return [(field, (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def is_problem(r: httpx.Response, status: int, code: str) -> bool:
    body = r.json()
    return (r.status_code == status and r.headers["content-type"].startswith("application/problem+json")
            and body["code"] == code and body["status"] == status and isinstance(body["detail"], str))


def test_health_is_open_and_everything_else_needs_a_key(server):
    assert client(server, None).get("/v1/health").json() == {"status": "ok"}
    r = client(server, None).get("/v1/identities")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    bad = httpx.get(f"{server['base']}/v1/status", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert client(server, "revoked").get("/v1/status").status_code == 401
    r = client(server, "read").post("/v1/identities/x/enroll", files=files(SAMPLES / "multiface.jpg"))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert client(server, None).get("/openapi.json").status_code == 200


def test_enroll_search_verify_rename_delete(server, photos):
    w, r = client(server, "write"), client(server, "read")
    before = r.get("/v1/status").json()["templates"]  # the module's server is shared: other tests enroll into it
    colin = photos("lfw", "Colin_Powell", 1, 2, 3, 4)
    res = w.post("/v1/identities/colin/enroll", files=files(*colin[:3]))
    assert res.status_code == 200, res.text
    doc = res.json()
    assert set(doc) == {"identity", "created", "model_version", "accepted", "rejected", "skipped", "index_behind"}
    assert doc["accepted"]
    found = r.post("/v1/search", files=files(colin[3], field="file"), params={"top_k": "3"}).json()
    assert found["identity"] == "colin" and found["threshold_source"] == "model_card"
    v = r.post("/v1/verify", files=[("a", ("a.jpg", colin[0].read_bytes())), ("b", ("b.jpg", colin[3].read_bytes()))])
    assert v.json()["same"] is True
    vi = r.post("/v1/identities/colin/verify", files=files(colin[3], field="file")).json()
    assert vi["same"] and vi["identity"] == "colin"
    assert w.patch("/v1/identities/colin", json={"name": "Colin Powell"}).json()["name"] == "Colin Powell"
    tpls = r.get("/v1/identities/Colin Powell/templates").json()["templates"]
    assert len(tpls) == len(doc["accepted"])
    assert w.delete(f"/v1/templates/{tpls[0]['id']}").status_code == 200
    assert w.delete("/v1/identities/Colin Powell").json()["identity"] == "Colin Powell"
    assert r.get("/v1/identities/Colin Powell").status_code == 404
    st = r.get("/v1/status").json()
    assert st["templates"] == before and st["index"]["in_agreement"]


@pytest.mark.parametrize("name, make, status, code", [
    ("truncated", lambda: (SAMPLES / "multiface.jpg").read_bytes()[:4000], 422, "truncated_image"),
    ("text", lambda: b"just some text", 422, "not_an_image"),
    ("huge", lambda: b"\xff\xd8" + os.urandom(3_200_000), 413, "too_large"),
    ("no_face", None, 422, "no_face"),
])
def test_bad_uploads_get_the_right_code_and_store_nothing(server, name, make, status, code, tmp_path):
    if make is None:  # a real photo with no face: the top-left corner of an LFW photo (background only)
        from PIL import Image

        src = sorted((SAMPLES.parent / "lfw" / "images" / "Colin_Powell").glob("*.jpg"))[0]
        p = tmp_path / "corner.png"
        Image.open(src).crop((0, 0, 60, 60)).resize((120, 120)).save(p)
        data = p.read_bytes()
    else:
        data = make()
    w = client(server, "write")
    before = w.get("/v1/status").json()["templates"]
    res = w.post(f"/v1/identities/{name}/enroll", files=[("files", (f"{name}.jpg", data, "image/jpeg"))])
    if status == 413:
        assert res.status_code == 413 and res.json()["code"] == code
    else:  # enroll reports per-image reasons; a probe gets the error itself
        assert res.status_code == 200 and res.json()["rejected"][0]["code"] == code
        probe = client(server, "read").post("/v1/search", files=[("file", ("p.jpg", data, "image/jpeg"))])
        assert probe.status_code == status and probe.json()["code"] == code
        assert probe.headers["content-type"].startswith("application/problem+json")
    after = w.get("/v1/status").json()
    assert after["templates"] == before and after["index"]["in_agreement"]
    assert name not in [i["name"] for i in w.get("/v1/identities").json()["identities"]]


def test_validation_errors_are_problem_json_and_never_echo_the_upload(server, photos):
    r = client(server, "read")
    jpeg = photos("lfw", "Colin_Powell", 1)[0].read_bytes()
    res = r.post("/v1/search", files=[("wrong_field", ("a.jpg", jpeg, "image/jpeg"))])
    assert is_problem(res, 400, "invalid_argument") and "file" in res.json()["detail"]
    assert len(res.content) < 2000  # the 9 KB upload is not echoed back
    res = r.post("/v1/search", files=[("file", ("a.jpg", jpeg, "image/jpeg"))], params={"top_k": "many"})
    assert is_problem(res, 400, "invalid_argument") and "top_k" in res.json()["detail"]
    res = r.post("/v1/search", files=[("file", ("a.jpg", jpeg, "image/jpeg"))], params={"aligned": "1"})
    assert is_problem(res, 400, "invalid_argument") and "aligned" in res.json()["detail"]  # true or false only
    assert is_problem(r.get("/v1/nowhere"), 404, "route_not_found")
    res = r.put("/v1/identities/someone")
    assert is_problem(res, 405, "method_not_allowed") and res.headers["allow"] == "DELETE, GET, PATCH"
    assert res.json()["request_id"] == res.headers["x-request-id"]


def test_reindex_needs_admin_and_rebuilds(server, photos):
    """(Its own person: the module's server is shared, and a test that searches for Colin Powell runs in any order.)"""
    w = client(server, "write")
    w.post("/v1/identities/reindexed/enroll", files=files(*photos("lfw", "Hans_Blix", 1, 2)))
    assert is_problem(w.post("/v1/reindex"), 403, "forbidden")
    assert is_problem(client(server, "revoked").post("/v1/reindex"), 401, "unauthorized")
    res = client(server, "admin").post("/v1/reindex")
    st = w.get("/v1/status").json()
    assert res.status_code == 200 and res.json()["vectors"] == st["templates"] >= 1 and st["index"]["in_agreement"]


def test_a_request_past_its_time_limit_is_504(tmp_path, live_server, photos):
    home = tmp_path / "home"
    keys = make_keys(home)
    base = live_server(load_settings(home=home, device="cpu", api_request_timeout_s=0.001))
    res = httpx.post(f"{base}/v1/search", headers={"Authorization": f"Bearer {keys['read']}"},
                     files=files(photos("lfw", "Colin_Powell", 1)[0], field="file"), timeout=60)
    assert is_problem(res, 504, "timeout")


@pytest.mark.embedded_only
def test_an_unexpected_failure_is_a_500_problem_without_internals(tmp_path, live_server):
    home = tmp_path / "home"
    keys = make_keys(home)
    base = live_server(load_settings(home=home, device="cpu"))
    headers = {"Authorization": f"Bearer {keys['read']}"}
    assert httpx.get(f"{base}/v1/identities", headers=headers).status_code == 200
    con = sqlite3.connect(home / "idsvc.db")  # the registry broken behind the server's back
    con.execute("drop table templates")
    con.commit()
    con.close()
    res = httpx.get(f"{base}/v1/identities", headers=headers)
    assert is_problem(res, 500, "internal")
    assert "Traceback" not in res.text and "SELECT" not in res.text and "templates" not in res.text


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """`idsvc serve` in its own process, as an operator runs it."""
    home = tmp_path_factory.mktemp("served") / "home"
    keys = make_keys(home)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "--home", str(home), "serve", "--port", str(port)],
                            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    if not wait_until_up(base):
        proc.kill()
        raise RuntimeError(proc.stdout.read().decode()[-2000:] if proc.stdout else "no output")
    yield {"base": base, "home": home, "keys": keys, "proc": proc}
    proc.terminate()
    out = proc.communicate(timeout=30)[0].decode()
    assert "\\xff\\xd8" not in out and "JFIF" not in out  # image bytes never reach the log


@pytest.mark.slow
def test_api_and_cli_enroll_into_one_home_at_once(served, tmp_path):
    """API enrolls one person while the CLI enrolls another into the same home: every template lands once."""
    ids = sorted(p for p in CELEBA.iterdir() if p.is_dir())
    api_photos = sorted(ids[20].glob("*.jpg"))[:12]
    cli_dir = tmp_path / "cli"
    cli_dir.mkdir()
    for p in sorted(ids[21].glob("*.jpg"))[:12]:
        (cli_dir / p.name).write_bytes(p.read_bytes())
    w = client(served, "write")
    results = {}

    def via_api() -> None:
        for p in api_photos:  # one request per photo, interleaving with the CLI's writes
            results.setdefault("api", []).append(w.post("/v1/identities/api_person/enroll", files=files(p)).json())

    t = threading.Thread(target=via_api)
    t.start()
    cli = subprocess.run([sys.executable, "-m", "cli.main", "--home", str(served["home"]), "--json", "enroll",
                          "cli_person", str(cli_dir)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    t.join(timeout=600)
    cli_doc = json.loads(cli.stdout)
    api_accepted = sum(len(d["accepted"]) for d in results["api"])
    st = w.get("/v1/status").json()
    people = {i["name"]: i["templates"] for i in w.get("/v1/identities").json()["identities"]}
    assert people.get("api_person", 0) == api_accepted > 0
    assert people.get("cli_person", 0) == len(cli_doc["accepted"]) > 0
    assert st["index"]["in_agreement"] and st["index"]["vectors"] == st["templates"]
    shas = [t["image_sha256"] for n in ("api_person", "cli_person")
            for t in w.get(f"/v1/identities/{n}/templates").json()["templates"]]
    assert len(shas) == len(set(shas))


def test_rate_limit_per_key(tmp_path):
    from idsvc.api import RateLimiter
    from idsvc.errors import IdsvcError

    lim = RateLimiter(tmp_path / "rate.sqlite3", per_minute=3)
    for _ in range(2):
        lim.check("k")
    other_worker = RateLimiter(tmp_path / "rate.sqlite3", per_minute=3)  # another process's limiter, same file
    other_worker.check("k")
    for limiter in (lim, other_worker):
        with pytest.raises(IdsvcError) as err:
            limiter.check("k")
        assert err.value.code == "rate_limited"
    lim.check("other")  # buckets are per key


def test_batch_routes_match_the_cli(server, photos, tmp_path):
    """detect, embed, bulk enroll (PERSON/PHOTO file names) and batch search over HTTP, with a bad photo reported
    in its item while the others go on, and the same fields as the CLI's --json."""
    w, r = client(server, "write"), client(server, "read")
    laura = photos("lfw", "Laura_Bush", 1, 3, 4)
    serena = photos("lfw", "Serena_Williams", 1, 2)
    multi = SAMPLES / "multiface.jpg"
    junk = ("files", ("junk.jpg", b"not a photo", "image/jpeg"))
    det = r.post("/v1/detect", files=[*files(multi, laura[0]), junk])
    assert det.status_code == 200, det.text
    doc = det.json()
    assert [len(p.get("faces") or []) for p in doc["photos"]] == [6, 1, 0] and doc["faces"] == 7
    assert doc["photos"][2]["error"]["code"] == "not_an_image" and doc["errors"] == 1
    assert len(doc["photos"][1]["faces"][0]["landmarks"]) == 5

    emb = r.post("/v1/embed", files=files(laura[0], laura[1])).json()["embeddings"]
    a, b = (np.array(e["embedding"]) for e in emb)
    assert abs(np.linalg.norm(a) - 1) < 1e-4 and a @ b > 0.5 and emb[0]["model_version"]

    bulk = w.post("/v1/enroll", files=[("files", (f"known/bulk_laura/{p.name}", p.read_bytes(), "image/jpeg"))
                                       for p in laura[:2]]
                  + [("files", (f"known/bulk_serena/{serena[0].name}", serena[0].read_bytes(), "image/jpeg")),
                     ("files", ("loose.jpg", serena[1].read_bytes(), "image/jpeg"))])
    assert bulk.status_code == 200, bulk.text
    got = bulk.json()
    assert [i["identity"] for i in got["identities"]] == ["bulk_laura", "bulk_serena"]
    assert got["accepted"] == 3, [i["rejected"] for i in got["identities"]]  # one face each
    assert got["rejected"] == 1 and got["unnamed"][0]["path"] == "loose.jpg"

    many = r.post("/v1/search/batch", files=[*files(laura[2], serena[1], multi), junk]).json()
    assert [x.get("identity") for x in many["results"]][:2] == ["bulk_laura", "bulk_serena"]
    assert many["results"][3]["error"]["code"] == "not_an_image"
    assert many["summary"] == {"items": 4, "positive": 2, "negative": 1, "errors": 1, "exit_code": 2}


def test_a_request_without_a_key_is_refused_before_its_body_is_read(server):
    """Headers announcing a 2.9 MB upload, then nothing: the 401 comes back at once, without waiting for the body."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(server["base"])
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/identities/x/enroll HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; "
                     b"boundary=b\r\nContent-Length: 2900000\r\n\r\n--b\r\n")
        t0 = time.time()
        answer = sock.recv(65536).decode("latin-1")
    assert answer.startswith("HTTP/1.1 401") and "application/problem+json" in answer
    assert time.time() - t0 < 5


def test_429_says_when_to_retry(tmp_path, live_server):
    home = tmp_path / "home"
    keys = make_keys(home)
    base = live_server(load_settings(home=home, device="cpu", api_rate_per_minute=2))
    headers = {"Authorization": f"Bearer {keys['read']}"}
    codes = [httpx.get(f"{base}/v1/identities", headers=headers) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert is_problem(codes[2], 429, "rate_limited") and 1 <= int(codes[2].headers["retry-after"]) <= 30
