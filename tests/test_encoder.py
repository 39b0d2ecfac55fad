"""Checkpoints, model versions, embeddings, and the Keras FaceNet import (offline: a round trip through h5)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from idsvc.encoders.checkpoint import model_version, read_checkpoint, save_checkpoint, weights_sha256
from idsvc.encoders.keras_import import import_facenet_keras, import_to_checkpoint
from idsvc.encoders.load import load_encoder
from idsvc.encoders.nets import build
from idsvc.errors import IdsvcError
from tests.keras_export import export_facenet_keras


def test_shipped_model_card(model_path, facenet_path):
    card = read_checkpoint(model_path)["card"]
    for key in ("name", "arch", "embedding_size", "preprocessing", "source", "training", "lfw", "weights_sha256"):
        assert key in card
    assert card["preprocessing"]["input_size"] == 160
    assert card["lfw"]["accuracy"] >= 0.9945  # LFW 10-fold, measured by `idsvc eval lfw --write-card`
    assert card["lfw"]["tar_at_far_1e-3"] >= 0.99 and card["threshold"] is not None
    assert [m["name"] for m in card["members"]] == ["facenet-keras", "sface"]  # the fused default
    assert "Apache-2.0" in card["notes"] and "MS-Celeb-1M" in card["notes"]  # what users must know
    single = read_checkpoint(facenet_path)["card"]  # the single FaceNet model stays selectable
    assert single["arch"] == "inception_resnet_v1" and single["lfw"]["accuracy"] >= 0.99


def test_embeddings_are_unit_float32_and_deterministic(shared_pipeline, photos):
    from idsvc.faces.images import load_image

    img = load_image(photos("lfw", "Colin_Powell", 1)[0], max_pixels=10**8, min_side=32)
    crop = shared_pipeline.one_face(img).aligned.crop
    e1 = shared_pipeline.encoder.embed(np.stack([crop, crop[:, ::-1]]))
    e2 = shared_pipeline.encoder.embed(crop[None])
    assert e1.dtype == np.float32 and e1.shape == (2, shared_pipeline.encoder.dim)
    assert np.allclose(np.linalg.norm(e1, axis=1), 1, atol=1e-5)
    assert np.allclose(e1[0], e2[0], atol=1e-5)
    assert e1[0] @ e1[1] > 0.8  # a mirrored face is still the same person


def test_version_depends_on_weights_not_card(tmp_path):
    m = build("compact").eval()
    card = {"name": "t", "arch": "compact", "embedding_size": 128,
            "preprocessing": {"input_size": 112, "align": "idsvc-5pt-v1", "normalize": "fixed"}}
    c1 = save_checkpoint(tmp_path / "a.pt", m, {**card, "notes": "one"})
    c2 = save_checkpoint(tmp_path / "b.pt", m, {**card, "notes": "two"})
    assert c1["version"] == c2["version"]
    with torch.no_grad():
        m.linear.weight.add_(0.01)
    c3 = save_checkpoint(tmp_path / "c.pt", m, card)
    assert c3["version"] != c1["version"]
    assert load_encoder(tmp_path / "c.pt", device="cpu").version == c3["version"]


def test_tampered_checkpoint_is_refused(tmp_path):
    m = build("compact").eval()
    save_checkpoint(tmp_path / "a.pt", m, {"name": "t", "arch": "compact", "embedding_size": 128,
                                           "preprocessing": {"input_size": 112, "normalize": "fixed"}})
    blob = torch.load(tmp_path / "a.pt", weights_only=True)
    blob["state_dict"]["linear.weight"][0, 0] += 1
    torch.save(blob, tmp_path / "a.pt")
    with pytest.raises(IdsvcError) as err:
        read_checkpoint(tmp_path / "a.pt")
    assert err.value.code == "model_invalid"
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(IdsvcError) as err:
        read_checkpoint(tmp_path / "junk.pt")
    assert err.value.code == "model_invalid"


@pytest.fixture(scope="module")
def shipped_as_keras(tmp_path_factory, facenet_path):
    """The shipped weights written back in the Keras file's layout: the importer's input, made offline."""
    from idsvc.encoders.load import load_encoder

    enc = load_encoder(facenet_path, device="cpu")
    path = tmp_path_factory.mktemp("keras") / "facenet_keras.h5"
    n = export_facenet_keras(enc.model, path)
    return enc, path, n


def test_keras_import_round_trip(shipped_as_keras, tmp_path):
    enc, h5, n = shipped_as_keras
    assert n == 490  # the real facenet_keras_2024.h5 holds 490 tensors: TF-slim batch norms carry no gamma
    card = import_to_checkpoint(h5, tmp_path / "imported.pt")
    imported = load_encoder(tmp_path / "imported.pt", device="cpu")
    a = {k: v.float() for k, v in enc.model.state_dict().items()}
    b = imported.model.state_dict()
    assert all(torch.equal(a[k], b[k].float()) for k in a if not k.endswith("num_batches_tracked"))
    assert "MS-Celeb-1M" in card["source"] and "withdrew" in card["source"]
    x = np.random.default_rng(0).integers(0, 255, (2, 160, 160, 3), dtype=np.uint8)
    assert np.allclose(enc.embed(x), imported.embed(x), atol=1e-5)


@pytest.mark.parametrize("damage", ["extra", "missing", "shape"])
def test_keras_import_refuses_files_that_do_not_map(shipped_as_keras, tmp_path, damage):
    import shutil

    _, h5, _ = shipped_as_keras
    bad = tmp_path / "bad.h5"
    shutil.copy(h5, bad)
    with h5py.File(bad, "r+") as fh:
        w = fh["model_weights"]
        if damage == "extra":
            w.create_group("Logits").create_group("Logits").create_dataset("kernel:0", data=np.zeros((128, 10)))
        elif damage == "missing":
            del w["Block17_3_Conv2d_1x1"]
        else:
            del w["Conv2d_1a_3x3/Conv2d_1a_3x3/kernel:0"]
            w["Conv2d_1a_3x3/Conv2d_1a_3x3"].create_dataset("kernel:0", data=np.zeros((5, 5, 3, 32)))
    with pytest.raises(IdsvcError) as err:
        import_facenet_keras(bad)
    assert err.value.code == "model_invalid"
    assert {"extra": "map to nothing", "missing": "have no tensor", "shape": "has shape"}[damage] in err.value.message


def test_weights_hash_is_order_independent():
    m = build("compact")
    sd = m.state_dict()
    assert weights_sha256(sd) == weights_sha256(dict(reversed(list(sd.items()))))
    assert model_version({"name": "x", "weights_sha256": "a", "embedding_size": 128, "preprocessing": {}}) != \
        model_version({"name": "x", "weights_sha256": "a", "embedding_size": 64, "preprocessing": {}})
