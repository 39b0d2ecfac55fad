"""Loading any checkpoint kind as an encoder, and writing a fusion: the factories that choose between the kinds, so
they sit above them (a torch network, SFace on ONNX Runtime, a fusion of both).

``load_model`` is how every path that embeds faces loads a model (the active model, ``reindex --model``, the
benchmarks): on the settings' device, and on the CPU with each torch network behind ONNX Runtime (float32, or int8
where the model ships activation ranges and the CPU has VNNI), unless ``IDSVC_CPU_RUNTIME=torch``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from idsvc.encoders.checkpoint import FORMAT, read_checkpoint, write_blob
from idsvc.encoders.protocol import EmbeddingModel
from idsvc.errors import IdsvcError
from idsvc.settings import Settings

log = logging.getLogger(__name__)


def load_encoder(path: str | Path, *, device: str = "auto", batch_size: int = 32) -> EmbeddingModel:
    """Any checkpoint kind (torch, onnx, fused), as stored (no CPU runtime). Raises ``file_not_found`` or
    ``model_invalid``."""
    return _from_blob(read_checkpoint(path), Path(path), device, batch_size)


def _from_blob(blob: dict[str, Any], path: Path | None, device: str, batch_size: int) -> EmbeddingModel:
    kind = blob["card"].get("kind", "torch")
    if kind == "onnx":
        from idsvc.encoders.sface import SFaceEncoder

        return SFaceEncoder(blob["onnx"], blob["card"], path, batch_size)
    if kind == "fused":
        from idsvc.encoders.fusion import FusedEncoder

        members = [(float(m["weight"]), _from_blob(m["blob"], None, device, batch_size)) for m in blob["members"]]
        return FusedEncoder(members, blob["card"], path)
    from idsvc.encoders.torch_encoder import from_blob

    return from_blob(blob, path, device, batch_size)


def load_model(path: Path, settings: Settings) -> EmbeddingModel:
    """The checkpoint at ``path`` as ``settings`` run it: on their device, and on the CPU through ONNX Runtime
    (float32, or int8 where ``settings.cpu_runtime`` asks and the model ships ranges) unless they say "torch"."""
    encoder = load_encoder(path, device=settings.device, batch_size=settings.batch_size)
    if settings.cpu_runtime != "torch":
        from idsvc.encoders.int8 import wants_int8

        accelerate(encoder, settings.model_cache_dir, int8=wants_int8(settings.cpu_runtime))
    return encoder


def accelerate(encoder: Any, cache_dir: Path, *, int8: bool = False) -> None:
    """Give every CPU torch network inside ``encoder`` (itself, or a fusion's members) an ONNX Runtime session: with
    ``int8``, the quantized one where its model ships activation ranges (``idsvc.encoders.int8``), else float32.

    On 2 CPU cores ONNX Runtime runs the shipped Inception-ResNet about 3× faster than PyTorch's eager mode at enroll
    batch sizes, with the same float32 arithmetic (largest difference in an embedding ~1e-6; cosine to the PyTorch
    vector ≥ 0.99999, tested), so LFW figures do not move. The export (~3 s) happens once per model version and is
    kept in the user's cache folder (``Settings.model_cache_dir``), shared by every home; anything that goes wrong here
    leaves the encoder on PyTorch, with a warning, rather than failing the command. On a GPU the encoder stays on
    PyTorch (autocast)."""
    from idsvc.encoders.torch_encoder import Encoder, exported_onnx
    from idsvc.onnx_runtime import OnnxNetwork

    for member in [enc for _, enc in getattr(encoder, "members", [])] or [encoder]:
        if not (isinstance(member, Encoder) and member.device.type == "cpu" and member.runtime is None):
            continue
        if int8:
            try:
                from idsvc.encoders.int8 import for_this_cpu, quantized

                path = quantized(member, cache_dir)
                if path is not None:
                    member.runtime, member.numerics = OnnxNetwork(for_this_cpu(path)), "int8"
                    continue
            except Exception as exc:  # noqa: BLE001 - the float32 path is always there to fall back to
                log.warning("int8 path unavailable for %s (%s: %s); using float32", member.version,
                            exc.__class__.__name__, exc)
        try:
            member.runtime = OnnxNetwork(exported_onnx(member, cache_dir))
        except Exception as exc:  # noqa: BLE001 - the PyTorch path is always there to fall back to
            log.warning("ONNX Runtime path unavailable for %s (%s: %s); using PyTorch", member.version,
                        exc.__class__.__name__, exc)


def fuse(paths: list[Path], weights: list[float], out: Path, *, name: str = "fused",
         link: bool = False) -> dict[str, Any]:
    """Write a fused checkpoint holding each member checkpoint whole, or with ``link`` naming each member's file
    relative to it (members shipped beside it, as ``data/models/`` does, are then stored once; the member versions
    in the card still pin their weights). Raises ``invalid_argument``, ``file_not_found`` and ``model_invalid``."""
    from idsvc.encoders.fusion import make_card

    if len(weights) != len(paths):
        raise IdsvcError("invalid_argument", f"{len(paths)} models but {len(weights)} weights")
    blobs = [read_checkpoint(p) for p in paths]
    if any(b["card"].get("kind") == "fused" for b in blobs):
        raise IdsvcError("invalid_argument", "a member cannot itself be a fused model")
    card = make_card(name, [(w, load_encoder(p, device="cpu")) for w, p in zip(weights, paths)])
    members = [{"weight": float(w), "file": os.path.relpath(p, out.resolve().parent)} if link
               else {"weight": float(w), "blob": b} for w, b, p in zip(weights, blobs, (q.resolve() for q in paths))]
    return write_blob(out, {"format": FORMAT, "card": card, "members": members})
