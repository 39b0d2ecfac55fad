"""Concurrent requests share passes through the models (issue 28, ``idsvc.api.gather``), on a real server on
127.0.0.1 with real LFW photos: what each request gets when it shares a pass is exactly what it gets alone —
searches with different parameters, verifies, embeds, a stranger and a broken upload among them — and the passes
really were shared (the server's own ``idsvc_api_batch_photos`` histogram)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from idsvc.settings import load_settings
from tests.conftest import LFW, make_keys

PEOPLE = ("Colin_Powell", "George_W_Bush", "Tony_Blair", "Donald_Rumsfeld")
STRANGER = "Gerhard_Schroeder"


def photos(person: str) -> list[Path]:
    return sorted((LFW / person).glob("*.jpg"))


def passes(base: str) -> tuple[float, float]:
    """(passes, photos) so far, from the server's histogram."""
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics").text):
        if family.name == "idsvc_api_batch_photos":
            got = {s.name: s.value for s in family.samples}
            return got["idsvc_api_batch_photos_count"], got["idsvc_api_batch_photos_sum"]
    raise AssertionError("no idsvc_api_batch_photos metric")


def answer(res: httpx.Response) -> tuple[int, Any]:
    """What a client reads: the status and the body (a problem without its per-request id)."""
    body = res.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
        body.pop("instance", None)
    return res.status_code, body


@pytest.mark.slow  # many concurrent requests against a live server, then each alone: ~6 s on 2 cores
def test_requests_that_share_a_pass_get_what_each_gets_alone(tmp_path: Path, live_server) -> None:
    # companions are waited for up to 300 ms, so the requests sent together below do share passes
    s = load_settings(home=tmp_path / "home", device="cpu", api_batch_wait_ms=300, api_batch=16)
    keys = make_keys(s.home)
    base = live_server(s)
    auth = {"Authorization": f"Bearer {keys['write']}"}
    gallery = [("files", (f"{p}/{f.name}", f.read_bytes(), "image/jpeg")) for p in PEOPLE for f in photos(p)[:2]]
    enrolled = httpx.post(f"{base}/v1/enroll", headers=auth, files=gallery, timeout=300)
    assert enrolled.status_code == 200 and len(enrolled.json()["identities"]) == 4, enrolled.text

    probes = [photos(p)[k] for p in PEOPLE for k in (2, 3)] + photos(STRANGER)[:2]
    broken = ("broken.jpg", photos(PEOPLE[0])[4].read_bytes()[:300], "image/jpeg")
    requests: list[tuple[str, dict, list]] = []
    for i, p in enumerate(probes):
        top_k = 3 if i % 2 else 1  # two kinds of search: gathered only with their own kind
        requests.append(("/v1/search", {"top_k": top_k}, [("file", (p.name, p.read_bytes(), "image/jpeg"))]))
    requests.append(("/v1/search", {"top_k": 3}, [("file", broken)]))
    for a, b in ((photos(PEOPLE[0])[5], photos(PEOPLE[0])[6]), (photos(PEOPLE[1])[5], photos(STRANGER)[3]),
                 (photos(PEOPLE[2])[5], photos(PEOPLE[2])[6])):
        requests.append(("/v1/verify", {}, [("a", (a.name, a.read_bytes(), "image/jpeg")),
                                            ("b", (b.name, b.read_bytes(), "image/jpeg"))]))
    requests.append(("/v1/embed", {}, [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in probes[:3]]))
    requests.append(("/v1/embed", {}, [("files", (probes[4].name, probes[4].read_bytes(), "image/jpeg")),
                                       ("files", broken)]))
    requests.append(("/v1/search/batch", {"top_k": 3}, [("files", (p.name, p.read_bytes(), "image/jpeg"))
                                                         for p in probes[::3]]))

    def send(req: tuple[str, dict, list]) -> httpx.Response:
        path, params, files = req
        return httpx.post(f"{base}{path}", headers=auth, params=params, files=files, timeout=120)

    alone = [answer(send(req)) for req in requests]
    before = passes(base)
    together: list[Any] = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def client(i: int) -> None:
        start.wait()
        together[i] = answer(send(requests[i]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    after = passes(base)

    # the answers a client can read are the same, to the last digit of every score and vector
    for i, (one, shared) in enumerate(zip(alone, together, strict=True)):
        assert shared == one, (requests[i][0], requests[i][1], one, shared)
    named = [body["identity"] for code, body in alone[:len(probes)] if code == 200]
    assert named == [p for p in PEOPLE for _ in (0, 1)] + [None, None], named  # the answers are worth comparing
    assert alone[len(probes)][0] == 422 and alone[len(probes)][1]["code"] in {"not_an_image", "truncated_image"}
    # and they were gathered: fewer passes than requests, every photo in one of them
    sent = len(probes) + 1 + 3 + 5 + len(probes[::3])
    assert after[1] - before[1] == sent, (before, after)
    assert after[0] - before[0] < len(requests) / 2, (before, after)
