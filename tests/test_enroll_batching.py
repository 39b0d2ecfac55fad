"""Batched enroll (photos detected in same-shape groups, crops of several identities embedded in one pass) gives the
templates the one-photo path gives, on real photos."""

from __future__ import annotations

import numpy as np

from idsvc.settings import load_settings
from tests.conftest import search_one


def test_batched_enroll_gives_the_one_photo_templates(tmp_path, photos, make_service):
    people = {"Tony_Blair": (1, 2, 3), "Colin_Powell": (1, 3), "George_W_Bush": (1, 2, 4)}
    folders = {name: photos("lfw", name, *nums) for name, nums in people.items()}
    batched = make_service(load_settings(home=tmp_path / "batched", device="cpu"))
    r = batched.enroll_each([folders["Tony_Blair"][0].parent.parent])  # one call: every photo of every person
    one = make_service(load_settings(home=tmp_path / "one", device="cpu"))
    for name, paths in folders.items():
        for p in paths:  # one photo per call: detected alone, embedded alone
            one.enroll(name, [str(p)])

    def by_sha(svc):
        rows = svc.home.registry.template_rows(["id", "image_sha256", "model_version"])
        vecs = svc.home.registry.embeddings_by_id([row["id"] for row in rows])
        return {row["image_sha256"]: vecs[row["id"]][1] for row in rows}

    a, b = by_sha(batched), by_sha(one)
    assert r.accepted >= 6 and set(a) == set(b)
    cos = [float(np.dot(a[k], b[k])) for k in a]
    assert min(cos) >= 0.9999, cos
    probe = folders["Tony_Blair"][0]
    x, y = search_one(batched, probe), search_one(one, probe)
    assert x.identity == y.identity == "Tony_Blair" and abs(x.score - y.score) < 1e-4
    assert batched.status().index.in_agreement and batched.status().templates == r.accepted


def test_the_onnx_runtime_path_gives_the_pytorch_embeddings(shared_pipeline, photos):
    """The float32 CPU path (encoders/load.py: accelerate) runs the same network: on real aligned crops, cosine ≥
    0.99999 to PyTorch's. (The int8 path is held to LFW instead: test_int8.py, bench/int8.py.)"""
    from idsvc.encoders.load import accelerate, load_encoder
    from tests.conftest import FACENET_MODEL

    paths = photos("lfw", "Tony_Blair", 1, 2, 3) + photos("lfw", "Colin_Powell", 1)
    batch = np.stack([shared_pipeline.one_face(shared_pipeline.load(p)).aligned.crop for p in paths])
    member = load_encoder(FACENET_MODEL, device="cpu")
    slow = member.embed(batch)
    accelerate(member, shared_pipeline.settings.model_cache_dir)
    assert member.runtime is not None and member.numerics == "float32"
    fast = member.embed(batch)
    assert fast.shape == slow.shape and float(np.min(np.sum(fast * slow, axis=1))) >= 0.99999


def test_batch_search_gives_the_one_photo_answers(tmp_path, photos, make_service):
    """A batch search (photos detected together, embedded in one pass) answers each photo as a search of that photo
    alone does; a bad file in the batch carries its error and the rest go on."""
    svc = make_service(load_settings(home=tmp_path / "h", device="cpu"))
    for name in ("Tony_Blair", "Colin_Powell"):
        svc.enroll(name, [str(p) for p in photos("lfw", name, 1, 2)])
    probes = photos("lfw", "Tony_Blair", 3, 4) + photos("lfw", "Colin_Powell", 3) + photos("lfw", "Ariel_Sharon", 1)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    paths = [str(p) for p in probes[:2]] + [str(bad)] + [str(p) for p in probes[2:]]
    results = list(svc.search(paths))
    assert [r.path for r in results] == paths
    assert results[2].error.code == "not_an_image"
    answers = [r.result() if r.error is None else None for r in results]
    for path, r in zip(paths, answers):
        if r is None:
            continue
        alone = search_one(svc, path)
        assert r.identity == alone.identity and abs(r.score - alone.score) < 1e-4
        assert [c.name for c in r.faces[0].candidates] == [c.name for c in alone.faces[0].candidates]
    assert [r and r.identity for r in answers] == ["Tony_Blair", "Tony_Blair", None, "Colin_Powell", None]
