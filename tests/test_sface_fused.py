"""SFace through ONNX Runtime and fused encoders, on real photos: the repaired int8 file embeds faces, a fused vector
has norm 1 and its cosine is the weighted mean of its members' cosines, and a home switches between a single and
a fused model with `reindex --model`, keeping every template and never mixing versions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from idsvc.encoders.load import load_encoder
from idsvc.errors import IdsvcError
from idsvc.faces.images import load_image
from tests.conftest import LFW

runner = CliRunner()


@pytest.fixture(scope="module")
def sface_path(tmp_path_factory) -> Path:
    from idsvc.encoders.sface import import_sface

    out = tmp_path_factory.mktemp("sface") / "sface.pt"
    import_sface(None, out)
    return out


@pytest.fixture(scope="module")
def crops(shared_pipeline) -> np.ndarray:
    """Aligned crops of two photos of Colin Powell and one of George W. Bush."""
    paths = sorted((LFW / "Colin_Powell").glob("*.jpg"))[:2] + sorted((LFW / "George_W_Bush").glob("*.jpg"))[:1]
    return np.stack([shared_pipeline.one_face(load_image(p, max_pixels=10**8, min_side=8), strict=False).aligned.crop
                     for p in paths])


def test_sface_embeds_real_faces(sface_path, crops):
    enc = load_encoder(sface_path, device="cpu")
    v = enc.embed(crops)
    assert v.shape == (3, 128) and v.dtype == np.float32 and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > 0.5 > v[0] @ v[2]  # same person well above a different one
    assert enc.embed(crops[:0]).shape == (0, 128)


def test_sface_weights_are_dequantized_once_with_the_same_arithmetic(sface_path, crops):
    """``float_weights`` gives every DequantizeLinear's output bit for bit as ONNX's reference evaluator computes it,
    PRelus become depthwise convolutions, and the embeddings match a session on the shipped int8 file (cosine
    ≥ 0.99999, largest difference 1e-5)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    from idsvc.encoders.checkpoint import read_checkpoint
    from idsvc.encoders.sface import float_weights
    from idsvc.onnx_runtime import prelu_as_depthwise

    raw = read_checkpoint(sface_path)["onnx"]
    shipped = onnx.load_from_string(raw)
    folded = {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(float_weights(raw)).graph.initializer}
    consts = {t.name: numpy_helper.to_array(t) for t in shipped.graph.initializer}
    dequant = [n for n in shipped.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dequant) > 20 and not any(n.op_type == "DequantizeLinear"
                                         for n in onnx.load_from_string(float_weights(raw)).graph.node)
    for node in dequant[:3] + dequant[-3:]:  # blocked conv weights and the blocked fully connected layer
        values = [consts[i] for i in node.input]
        inputs = [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                  for i, v in zip(node.input, values)]
        graph = helper.make_graph([node], "one", inputs, [helper.make_tensor_value_info(node.output[0], 1, None)])
        expected = ReferenceEvaluator(helper.make_model(graph, opset_imports=shipped.opset_import)).run(
            None, dict(zip(node.input, values)))[0]
        assert np.array_equal(folded[node.output[0]], expected)
    enc = load_encoder(sface_path, device="cpu")
    session = ort.InferenceSession(raw, providers=["CPUExecutionProvider"])
    x = enc.arcface_crops(crops).transpose(0, 3, 1, 2).astype(np.float32)
    y = session.run(None, {enc.input_name: x})[0]
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    ours = enc.embed(crops)
    assert (np.sum(y * ours, axis=1) >= 0.99999).all() and np.abs(y - ours).max() < 1e-5
    runnable = onnx.load_from_string(prelu_as_depthwise(float_weights(raw)))
    assert not any(n.op_type == "PRelu" for n in runnable.graph.node)
    assert sum(n.op_type == "PRelu" for n in shipped.graph.node) == 27


def test_a_non_onnx_file_is_refused(tmp_path):
    from idsvc.encoders.sface import import_sface

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(IdsvcError) as err:
        import_sface(junk, tmp_path / "x.pt")
    assert err.value.code == "model_invalid"


def test_fused_vector_has_norm_1_and_cosine_is_the_weighted_mean(sface_path, facenet_path, crops, tmp_path):
    from idsvc.encoders.load import fuse

    card = fuse([facenet_path, sface_path], [2.0, 1.0], tmp_path / "fused.pt")
    fused = load_encoder(tmp_path / "fused.pt", device="cpu")
    a, b = load_encoder(facenet_path, device="cpu").embed(crops), load_encoder(sface_path, device="cpu").embed(crops)
    f = fused.embed(crops)
    assert f.shape == (3, 256) and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    assert np.allclose(f @ f.T, (2 * (a @ a.T) + b @ b.T) / 3, atol=1e-5)
    assert card["embedding_size"] == 256 and [m["weight"] for m in card["members"]] == [2.0, 1.0]
    other = fuse([facenet_path, sface_path], [1.0, 1.0], tmp_path / "equal.pt")
    assert other["version"] != card["version"]  # the weights are part of the model version
    with pytest.raises(IdsvcError) as err:
        fuse([facenet_path], [1.0], tmp_path / "one.pt")
    assert err.value.code == "invalid_argument"


@pytest.mark.slow  # re-embeds a gallery twice: ~8 s on 2 cores
def test_a_home_switches_between_single_and_fused_models(service, photos, sface_path, facenet_path, tmp_path):
    from idsvc.encoders.load import fuse

    fused_path = tmp_path / "fused.pt"
    fused_version = fuse([facenet_path, sface_path], [1.0, 1.0], fused_path)["version"]
    colin = photos("lfw", "Colin_Powell", 1, 2, 3)
    n = len(service.enroll("colin", [str(p) for p in colin[:2]]).accepted)  # on the shipped fusion
    home = service.settings.home

    def idsvc(*args: str) -> dict:
        r = runner.invoke(app, ["--home", str(home), "--json", *args], catch_exceptions=False)
        assert r.exit_code in (0, 1), r.stderr
        return json.loads(r.stdout)

    down = idsvc("reindex", "--model", str(facenet_path))  # the shipped fusion → the single FaceNet model
    single = load_encoder(facenet_path, device="cpu").version
    assert down["upgrade"]["from"] == [service.home.model.version]
    assert down["upgrade"]["to"] == single and down["vectors"] == n
    up = idsvc("reindex", "--model", str(fused_path))
    assert up["upgrade"]["to"] == fused_version and up["upgrade"]["templates"] == n and up["vectors"] == n
    st = idsvc("status")
    assert st["model"]["version"] == fused_version and st["templates_other_models"] == {}
    assert st["model"]["embedding_size"] == 256 and st["index"]["in_agreement"]
    assert idsvc("search", "--threshold", "0.4", str(colin[2]))["identity"] == "colin"  # not calibrated yet
    back = idsvc("reindex", "--model", str(facenet_path))
    assert back["upgrade"]["to"] == single and back["vectors"] == n
    assert idsvc("status")["templates_other_models"] == {}


def test_sface_realigns_a_tight_crop_from_its_own_landmarks(service, sface_path, tmp_path):
    """A face that filled its photo is kept whole (not on idsvc's template); SFace must re-align it from where its
    landmarks really are — when enrolled and again when `reindex --model` re-embeds the stored crop."""
    from tests.test_tight_crops import arcface_crop

    colin = sorted((LFW / "Colin_Powell").glob("*.jpg"))
    pipeline = service.home.model.pipeline
    crop_file = arcface_crop(pipeline, colin[0], tmp_path)
    tight = pipeline.one_face(load_image(crop_file, max_pixels=10**8, min_side=8), strict=False)
    loose = pipeline.one_face(load_image(colin[3], max_pixels=10**8, min_side=8), strict=False)
    assert tight.quality.preparation == "tight"
    sface = load_encoder(sface_path, device="cpu")
    crops = np.stack([tight.aligned.crop, loose.aligned.crop])
    right = sface.embed(crops, np.stack([tight.aligned.landmarks, loose.aligned.landmarks]))
    assumed = sface.embed(crops)  # as if both crops were on idsvc's template
    assert right[0] @ right[1] > 0.6 and right[0] @ right[1] > assumed[0] @ assumed[1] + 0.1

    service.enroll("colin", [str(crop_file)])
    row, = service.home.registry.template_rows(["id", "crop_landmarks"])
    assert np.allclose(json.loads(row["crop_landmarks"]), tight.aligned.landmarks, atol=0.01)
    runner.invoke(app, ["--home", str(service.settings.home), "--json", "reindex", "--model", str(sface_path)],
                  catch_exceptions=False)
    (_, vec), = service.home.registry.embeddings_by_id([row["id"]]).values()
    assert vec @ right[0] > 0.999  # the stored crop, re-aligned from its stored landmarks


@pytest.mark.slow  # loads both members' checkpoints again: ~4 s on 2 cores
def test_a_linked_fusion_reads_its_members_from_beside_it(sface_path, facenet_path, crops, tmp_path):
    """`fuse --link` stores member file names, not copies (the shipped default does this so FaceNet is stored
    once); the card's member versions still pin the weights."""
    import shutil

    folder = tmp_path / "models"
    folder.mkdir()
    a, b = shutil.copy(facenet_path, folder / "a.pt"), shutil.copy(sface_path, folder / "b.pt")
    runner.invoke(app, ["--home", str(tmp_path / "h"), "model", "fuse", str(a), str(b), "-w", "2", "-w", "1",
                        "--link", "-o", str(folder / "linked.pt")], catch_exceptions=False)
    from idsvc.encoders.load import fuse

    whole = fuse([facenet_path, sface_path], [2.0, 1.0], tmp_path / "whole.pt")
    linked = load_encoder(folder / "linked.pt", device="cpu")
    assert linked.version == whole["version"]
    assert (folder / "linked.pt").stat().st_size < 100_000 < (tmp_path / "whole.pt").stat().st_size
    assert np.allclose(linked.embed(crops), load_encoder(tmp_path / "whole.pt", device="cpu").embed(crops), atol=1e-6)
    shutil.copy(facenet_path, folder / "b.pt")  # a different model where the member should be
    with pytest.raises(IdsvcError) as err:
        load_encoder(folder / "linked.pt", device="cpu")
    assert err.value.code == "model_invalid"
    (folder / "b.pt").unlink()
    with pytest.raises(IdsvcError) as err:
        load_encoder(folder / "linked.pt", device="cpu")
    assert err.value.code == "file_not_found" and "b.pt" in err.value.message
