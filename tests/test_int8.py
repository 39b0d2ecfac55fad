"""The int8 CPU path (idsvc/encoders/int8.py) on real faces: the shipped FaceNet ranges give an int8 network whose
vectors stay close to float32 ones and keep people apart; the default (``auto``: int8 where the CPU has VNNI) and
``IDSVC_CPU_RUNTIME=onnxruntime-int8`` give it to the active model (the fusion's FaceNet member), ``onnxruntime`` and
models without shipped ranges keep float32, status says which; and every user builds the same file."""

from __future__ import annotations

import numpy as np
import pytest

from idsvc.encoders.load import load_encoder
from idsvc.faces.images import load_image
from idsvc.settings import load_settings
from tests.conftest import FACENET_MODEL, LFW


@pytest.fixture(scope="module")
def crops(shared_pipeline) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops (and landmarks) of two photos each of Colin Powell and George W. Bush."""
    paths = [p for name in ("Colin_Powell", "George_W_Bush") for p in sorted((LFW / name).glob("*.jpg"))[:2]]
    fcs = [shared_pipeline.one_face(load_image(p, max_pixels=10**8, min_side=8), strict=False) for p in paths]
    return np.stack([f.aligned.crop for f in fcs]), np.stack([f.aligned.landmarks for f in fcs])


@pytest.mark.slow  # quantizes FaceNet and embeds real crops both ways: ~6 s on 2 cores
def test_int8_facenet_stays_close_to_float32_and_keeps_people_apart(crops, tmp_path):
    from idsvc.encoders.load import accelerate
    from idsvc.home.pipeline import Pipeline
    from idsvc.settings import DEFAULT_MODEL

    cache = load_settings(home=tmp_path / "h").model_cache_dir
    fused = load_encoder(DEFAULT_MODEL, device="cpu")
    accelerate(fused, cache, int8=True)
    member = next(m for _, m in fused.members if m.version.startswith("facenet"))
    assert member.numerics == "int8"
    assert "-int8" in Pipeline(load_settings(home=tmp_path / "h"), fused).recipe  # its own evaluation cache
    plain = load_encoder(FACENET_MODEL, device="cpu")
    accelerate(plain, cache)
    assert plain.numerics == "float32" and plain.runtime is not None
    q, f = member.embed(*crops), plain.embed(*crops)
    assert np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
    assert (np.sum(q * f, axis=1) > 0.98).all()  # LFW: median 0.9987, lowest 0.9899 (docs/benchmarks.md)
    sims = q @ q.T
    assert min(sims[0, 1], sims[2, 3]) > 0.5 > max(sims[0, 2], sims[1, 3])  # the same people stay together


@pytest.mark.slow  # quantizes FaceNet and embeds one crop both ways: ~6 s on 2 cores
def test_int8_on_a_cpu_without_vnni_is_not_saturated(shared_pipeline, tmp_path):
    """On this photo ONNX Runtime's uint8 × int8 kernel without VNNI overflows its 16-bit sums: the shipped int8 file
    run there gave a vector at cosine 0.957 to float32's. The file this CPU runs (``for_this_cpu``: the same values
    with uint8 weights where there is no VNNI) stays where VNNI's exact arithmetic puts it (0.999)."""
    from idsvc.encoders.load import accelerate

    face = shared_pipeline.one_face(load_image(LFW / "Catherine_Zeta-Jones" / "Catherine_Zeta-Jones_0004.jpg",
                                               max_pixels=10**8, min_side=8), strict=False)
    crop, marks = face.aligned.crop[None], face.aligned.landmarks[None]
    cache = tmp_path / "cache"
    plain = load_encoder(FACENET_MODEL, device="cpu")
    accelerate(plain, cache)
    forced = load_encoder(FACENET_MODEL, device="cpu")
    accelerate(forced, cache, int8=True)
    assert forced.numerics == "int8"
    assert float(np.sum(forced.embed(crop, marks) * plain.embed(crop, marks))) > 0.99


def test_the_setting_asks_for_int8_where_the_cpu_has_vnni_or_where_it_is_forced(tmp_path, monkeypatch):
    from idsvc.encoders.int8 import cpu_has_vnni, wants_int8

    monkeypatch.delenv("IDSVC_CPU_RUNTIME", raising=False)
    assert load_settings(home=tmp_path / "d").cpu_runtime == "auto"
    assert wants_int8("auto") == cpu_has_vnni()
    monkeypatch.setenv("IDSVC_CPU_RUNTIME", "onnxruntime-int8")
    assert wants_int8(load_settings(home=tmp_path / "b").cpu_runtime)
    assert not wants_int8("onnxruntime") and not wants_int8("torch")


@pytest.mark.slow  # loads FaceNet five ways and enrolls through a service: 4–12 s on 2 cores
def test_the_setting_gives_the_active_model_int8_and_only_where_ranges_ship(tmp_path, monkeypatch, photos):
    from idsvc.encoders.int8 import cpu_has_vnni
    from idsvc.encoders.load import accelerate
    from idsvc.home.active_model import ActiveModel
    from tests.conftest import permuted_model

    def facenet_numerics(settings) -> str:
        enc = ActiveModel(settings, lambda: None).encoder  # --model given: the registry is never asked
        return next((m for _, m in getattr(enc, "members", [])), enc).numerics

    monkeypatch.delenv("IDSVC_CPU_RUNTIME", raising=False)
    default = load_settings(home=tmp_path / "d", model=FACENET_MODEL, device="cpu")
    assert facenet_numerics(default) == ("int8" if cpu_has_vnni() else "float32")
    assert facenet_numerics(load_settings(home=tmp_path / "a", model=FACENET_MODEL, device="cpu",
                                          cpu_runtime="onnxruntime")) == "float32"
    monkeypatch.setenv("IDSVC_CPU_RUNTIME", "onnxruntime-int8")
    s = load_settings(home=tmp_path / "b", model=FACENET_MODEL, device="cpu")
    assert s.cpu_runtime == "onnxruntime-int8" and facenet_numerics(s) == "int8"
    from idsvc.service import Service

    svc = Service(s)  # its own model, loaded as a server loads it
    try:
        assert svc.status().model.numerics is None  # status loads no model
        svc.enroll("Colin_Powell", [str(p) for p in photos("lfw", "Colin_Powell", 1)])
        assert svc.status().model.numerics == "int8"
    finally:
        svc.close()
    permuted_model(tmp_path / "p.pt")
    other = load_encoder(tmp_path / "p.pt", device="cpu")
    accelerate(other, s.model_cache_dir, int8=True)  # no ranges ship for this version
    assert other.numerics == "float32" and other.runtime is not None


@pytest.mark.slow
def test_every_user_builds_the_same_int8_file(tmp_path):
    from idsvc.encoders.int8 import quantized

    enc = load_encoder(FACENET_MODEL, device="cpu")
    mine, again = quantized(enc, tmp_path / "cache-a"), quantized(enc, tmp_path / "cache-b")
    assert mine is not None and again is not None and mine.name == again.name
    assert mine.read_bytes() == again.read_bytes()
    theirs = load_settings(home=tmp_path / "h").model_cache_dir / "onnx" / mine.name
    if theirs.is_file():  # the user cache's copy, built by an earlier run
        assert theirs.read_bytes() == mine.read_bytes()
