"""The int8 CPU path for a torch encoder: its ONNX export quantized statically (ONNX Runtime, QDQ, uint8
activations, per-channel int8 weights), from activation ranges measured once and shipped beside the model.

Why: on 2 CPU cores the shipped FaceNet spends 14 ms per photo in float32 convolutions even under ONNX Runtime; with
int8 arithmetic (VNNI) it takes 4.7 ms. Why ranges and not a calibration run: quantization needs the range of every
activation, measured on real faces; the wheel ships no face photos, so the ranges — one CelebA training photo of each
of its 493 identities, never LFW — are measured once (``bench/int8.py``) and shipped as ``<model version>.int8.json``
(74 KB) in ``data/models``. Every user's quantized model is then the same file, byte for byte (tested), built once per
model version and ranges into the user's cache. The gate the issue set (LFW within 0.05 points and TAR at FAR 1e-3
within 0.2 points of float32) holds: FaceNet alone 99.28% against 99.22% (TAR 97.93 against 97.73), the shipped
fusion 99.53% against 99.58% (TAR 99.23 against 99.20) — 3 pairs of 6,000, at the edge of the gate;
``docs/benchmarks.md``.

Where it runs (``IDSVC_CPU_RUNTIME``, default ``auto``): on x86-64 CPUs with VNNI (AVX512-VNNI or AVX-VNNI: Intel
since Cascade Lake and Alder Lake, AMD since Zen 4), where the gate was measured. Without VNNI, ONNX Runtime sums
pairs of uint8 × int8 products in 16 bits, which full-range weights overflow on some faces (its documentation's
saturation warning; cosine to float32 0.957 on an LFW photo, 0.880 on a CelebA one, tested); 7-bit weights avoid
that but cost accuracy (fusion TAR 99.07% against 99.20%, cosine to float32 as low as 0.92). So there the same file
runs with its weights stored as uint8 with zero point 128 (``for_this_cpu``: the same quantized values), which ONNX
Runtime multiplies uint8 × uint8 widened to 16 bits and summed in 32 bits — exact, as VNNI's sums are (the fusion on
LFW 99.53% ± 0.23, TAR 99.23%, on a CPU without VNNI: the VNNI machine's figures) — at only 1.2× float32's speed
there, not 1.8×. So ``auto`` keeps float32 on such CPUs, and on other CPUs; ``onnxruntime-int8`` asks for int8 on
any CPU; ``onnxruntime`` keeps float32. A model without shipped ranges stays on float32, and anything that fails
here leaves the float32 path. The numerics change no model version: float32 and int8 vectors of the same model
are compared (a gallery enrolled on a GPU, searched on a CPU) at no measurable cost — the fusion scores 99.58% with
one photo of each LFW pair in float32 and the other in int8, TAR 99.20%, as float32 does. Batched and one-photo
enroll give the same int8 templates because detection is batch-invariant (``idsvc.faces.mtcnn.cpu_networks``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: How each quantized model is built; part of the cached file's name, so a change rebuilds it.
RECIPE = "qdq-u8s8-perchannel-minmax"


def wants_int8(cpu_runtime: str) -> bool:
    """Whether the ``cpu_runtime`` setting runs torch encoders in int8 on this CPU (see the module's docstring)."""
    return cpu_runtime == "onnxruntime-int8" or (cpu_runtime == "auto" and cpu_has_vnni())


def x86_64() -> bool:
    """Whether this is an x86-64 CPU (where ONNX Runtime's uint8 × int8 kernel without VNNI saturates)."""
    import platform

    return platform.machine().lower() in ("x86_64", "amd64")


def cpu_has_vnni() -> bool:
    """Whether this is an x86-64 CPU with VNNI (AVX512-VNNI or AVX-VNNI), on which ONNX Runtime's uint8 × int8 dot
    products cannot overflow. Asks NumPy's CPU feature table, then Linux's /proc/cpuinfo (NumPy has no AVX-VNNI)."""
    if not x86_64():
        return False
    import importlib

    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # NumPy 2, then 1
        try:
            if getattr(importlib.import_module(module), "__cpu_features__", {}).get("AVX512VNNI"):
                return True
            break
        except ImportError:
            continue
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx_vnni" in flags or " avx512_vnni" in flags


def numerics(encoder: Any) -> str:
    """"int8" when the encoder (or a member of a fusion) runs its quantized network, else "float32"."""
    members = [m for _, m in getattr(encoder, "members", [])] or [encoder]
    return "int8" if any(getattr(m, "numerics", "") == "int8" for m in members) else "float32"


def ranges_path(version: str) -> Path:
    """Where the activation ranges of model ``version`` ship (they may not: then there is no int8 path)."""
    from idsvc.settings import packaged

    return packaged("idsvc.models", "data/models") / f"{version}.int8.json"


def quantized(encoder: Any, cache_dir: Path) -> Path | None:
    """The int8 ONNX file for ``encoder`` (built into ``cache_dir`` once per model version), or None when no ranges
    ship for its version."""
    ranges = ranges_path(encoder.version)
    if not ranges.is_file():
        return None
    out = _built(encoder, cache_dir, ranges)
    if not out.is_file():
        _quantize(encoder, cache_dir, ranges, out)
    return out


def for_this_cpu(path: Path) -> Path:
    """The int8 file to run here: ``path`` itself on a CPU with VNNI (or not x86-64), else its ``unsigned_weights``
    copy beside it (built once), which ONNX Runtime's integer kernels compute without 16-bit saturation."""
    if not x86_64() or cpu_has_vnni():
        return path
    out = path.with_name(f"{path.stem}-u8w.onnx")
    if not out.is_file():
        scratch = out.with_name(f".{out.stem}-{os.getpid()}.onnx")
        scratch.write_bytes(unsigned_weights(path.read_bytes()))
        os.replace(scratch, out)
    return out


def unsigned_weights(raw: bytes) -> bytes:
    """The QDQ model with every int8 weight ``w`` (zero point 0) stored as the uint8 ``w + 128`` with zero point 128:
    the same dequantized values, ``(w + 128 − 128) · scale``, for a kernel that multiplies uint8 by uint8."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(raw)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3 \
                or node.input[0] not in inits or node.input[2] not in inits:
            continue
        w, zero = numpy_helper.to_array(inits[node.input[0]]), numpy_helper.to_array(inits[node.input[2]])
        if w.dtype != np.int8 or zero.dtype != np.int8 or zero.any():
            continue
        for k, value in ((0, (w.astype(np.int16) + 128).astype(np.uint8)), (2, np.full(zero.shape, 128, np.uint8))):
            name = f"{node.input[k]}_u8"  # a new name: an initializer another node shares is left as it is
            if name not in inits:
                inits[name] = numpy_helper.from_array(value, name)
                graph.initializer.append(inits[name])
            node.input[k] = name
    used = {n for node in graph.node for n in node.input}
    unused = {name for name in inits if name not in used}
    for listed in (graph.initializer, graph.input):
        kept = [x for x in listed if x.name not in unused]
        del listed[:]
        listed.extend(kept)
    return model.SerializeToString()


def _built(encoder: Any, cache_dir: Path, ranges: Path) -> Path:
    """The cached int8 file for these ranges: named by model version, recipe and the ranges' hash, so new ranges
    (or a new recipe) build a new file rather than reuse a stale one."""
    digest = hashlib.sha256(ranges.read_bytes()).hexdigest()[:12]
    return cache_dir / "onnx" / f"{encoder.version}.int8-{RECIPE}-{digest}.onnx"


def measure_ranges(encoder: Any, crops: np.ndarray, cache_dir: Path, out: Path) -> Path:
    """Measure the activation ranges of ``encoder`` on (N, S, S, 3) uint8 aligned crops (MinMax) and write them to
    ``out`` in ONNX Runtime's calibration cache format. Returns the int8 model built from them (in ``cache_dir``)."""
    from onnxruntime.quantization import CalibrationDataReader

    from idsvc.encoders.torch_encoder import preprocess

    norm = encoder.card["preprocessing"]["normalize"]

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": preprocess(crops[i:i + 16], norm).numpy()} for i in range(0, len(crops), 16)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    out.unlink(missing_ok=True)
    scratch = cache_dir / "onnx" / f".{encoder.version}.int8-{os.getpid()}.onnx"
    _quantize(encoder, cache_dir, out, scratch, reader=Crops())
    target = _built(encoder, cache_dir, out)
    os.replace(scratch, target)
    return target


def _quantize(encoder: Any, cache_dir: Path, ranges: Path, out: Path, reader: Any = None) -> None:
    """Export (cached), pre-process and quantize into ``out`` (temp name, then renamed). With ``reader`` the ranges
    are measured and written to ``ranges``; without, they are read from it (a copy: ONNX Runtime would rewrite a
    cache it disagreed with)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from idsvc.encoders.torch_encoder import exported_onnx as _exported

    source = _exported(encoder, cache_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pre, made, cache = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx", Path(tmp) / "ranges.json"
        if reader is None:
            shutil.copyfile(ranges, cache)
        quant_pre_process(str(source), str(pre))
        quantize_static(str(pre), str(made), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache))
        if reader is not None:  # keys sorted: the same ranges are the same bytes (ONNX Runtime writes in any order)
            ranges.write_text(json.dumps(json.loads(cache.read_text()), sort_keys=True))
        os.replace(made, out)
    log.info("built the int8 CPU path of %s (%s)", encoder.version, out)
