"""The encoder checkpoint (weights + model card) and batched embedding of aligned crops.

A checkpoint is one ``torch.save`` file: ``{"format": "idsvc-encoder/1", "card": {...}, "state_dict": {...}}``.
The card says how to rebuild and feed the network; its ``weights_sha256`` is checked on load. The model version —
``<name>-<12 hex>`` over the weights hash, embedding size and preprocessing — travels with every embedding, so that
embeddings from different models are never compared.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from idsvc import nets
from idsvc.checksums import file_sha256
from idsvc.errors import IdsvcError

FORMAT = "idsvc-encoder/1"
NORMALIZATIONS = ("prewhiten", "fixed")


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors in key order (names, dtypes, shapes and bytes): stable across re-saves."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_version(card: dict[str, Any]) -> str:
    payload = json.dumps({"w": card["weights_sha256"], "d": card["embedding_size"], "p": card["preprocessing"]},
                         sort_keys=True)
    return f"{card['name']}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def make_card(*, name: str, arch: str, embedding_size: int, normalize: str, source: str,
              training: dict[str, Any] | None = None, lfw: dict[str, Any] | None = None,
              threshold: float | None = None, notes: str = "") -> dict[str, Any]:
    if normalize not in NORMALIZATIONS:
        raise IdsvcError("model_invalid", f"normalize must be one of {NORMALIZATIONS}, not {normalize!r}")
    return {
        "name": name,
        "arch": arch,
        "embedding_size": embedding_size,
        "preprocessing": {"input_size": nets.INPUT_SIZE[arch], "align": "idsvc-5pt-v1", "normalize": normalize},
        "source": source,
        "training": training or {},
        "lfw": lfw or {},
        "threshold": threshold,
        "notes": notes,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def save_checkpoint(path: str | Path, model: torch.nn.Module, card: dict[str, Any], *, fp16: bool = False) -> dict:
    """Write weights + card atomically; writes ``<path>.card.json`` beside it for humans. Returns the final card."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if fp16:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    card = dict(card)
    card["weights_sha256"] = weights_sha256(state)
    card["weights_dtype"] = "float16" if fp16 else "float32"
    return write_blob(path, {"format": FORMAT, "card": card, "state_dict": state})


def write_blob(path: str | Path, blob: dict[str, Any]) -> dict[str, Any]:
    """Write a checkpoint of any kind atomically, with ``<path>.card.json`` beside it for humans. Returns the card."""
    card = blob["card"]
    card["version"] = model_version(card)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    shown = dict(card, file_sha256=file_sha256(path))
    path.with_name(path.name + ".card.json").write_text(json.dumps(shown, indent=2) + "\n")
    return shown


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint file; a fusion's members kept in files of their own (``fuse(link=True)``)
    are read from beside it. Raises ``file_not_found`` or ``model_invalid``."""
    p = Path(path)
    blob = _read_file(p)
    if blob["card"].get("kind") == "fused":
        blob["members"] = [m if "blob" in m else {**m, "blob": read_checkpoint(p.parent / m["file"])}
                           for m in blob["members"]]
    if not _weights_match(blob):
        raise IdsvcError("model_invalid", f"{p}: weights do not match the checksum in the model card", path=str(p))
    return blob


def _read_file(p: Path) -> dict[str, Any]:
    """The checkpoint file as stored (linked members not resolved)."""
    if not p.is_file():
        raise IdsvcError("file_not_found", f"{p}: no such model file", path=str(p))
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise IdsvcError("model_invalid", f"{p}: not an idsvc model checkpoint ({exc.__class__.__name__})",
                         path=str(p)) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise IdsvcError("model_invalid", f"{p}: not an idsvc model checkpoint (format {FORMAT} expected)",
                         path=str(p))
    return blob


def _weights_match(blob: dict[str, Any]) -> bool:
    """Whether the weights are the ones the card's checksum names (for a fusion: every member's, recursively)."""
    card, kind = blob["card"], blob["card"].get("kind", "torch")
    if kind == "onnx":
        return hashlib.sha256(blob["onnx"]).hexdigest() == card.get("weights_sha256")
    if kind == "fused":
        versions = [model_version(m["blob"]["card"]) for m in blob["members"]]
        return versions == [m["version"] for m in card["members"]] and all(_weights_match(m["blob"])
                                                                          for m in blob["members"])
    return weights_sha256(blob["state_dict"]) == card.get("weights_sha256")


def resolve_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise IdsvcError("invalid_argument", "--device cuda: no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def preprocess(crops: np.ndarray, normalize: str) -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB → (N, 3, S, S) float32 network input (see ``normalise``)."""
    return normalise(torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float(), normalize)


def normalise(x: torch.Tensor, normalize: str) -> torch.Tensor:
    """(N, 3, S, S) float pixels in 0…255, on any device → network input.

    "prewhiten" is facenet's per-image standardisation, (x − mean) / max(std, 1/√n); "fixed" is (x − 127.5) / 128.
    """
    if normalize == "prewhiten":
        n = x[0].numel()
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=True).clamp_min(1.0 / n ** 0.5)
        return (x - mean) / std
    return (x - 127.5) / 128.0


class CardProperties:
    """Version, input size, dimension and threshold of any encoder kind, all read from its model card (the version is
    hashed once)."""

    card: dict[str, Any]

    @functools.cached_property
    def version(self) -> str:
        return model_version(self.card)

    @property
    def input_size(self) -> int:
        return int(self.card["preprocessing"]["input_size"])

    @property
    def dim(self) -> int:
        return int(self.card["embedding_size"])

    @property
    def threshold(self) -> float | None:
        return self.card.get("threshold")


@dataclass
class Encoder(CardProperties):
    """A loaded model ready to embed aligned crops."""

    model: torch.nn.Module
    card: dict[str, Any]
    device: torch.device
    path: Path | None = None
    batch_size: int = 32
    runtime: Any = None  # the same network under ONNX Runtime, on the CPU (``cpu_runtime.accelerate``)
    numerics: str = "float32"  # "int8" when ``runtime`` is the quantized network (``idsvc.int8``)

    def embed(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 aligned crops → (N, D) float32, L2-normalised. The crops go in as they are (this
        network was trained on idsvc's crops), so ``landmarks`` is not needed."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        norm = self.card["preprocessing"]["normalize"]
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                x = preprocess(crops[i:i + self.batch_size], norm).to(self.device)
                if self.runtime is not None:
                    y = torch.from_numpy(self.runtime(x.numpy()))
                elif self.device.type == "cuda":
                    with torch.autocast("cuda", dtype=torch.float16):
                        y = self.model(x)
                else:
                    y = self.model(x)
                out.append(torch.nn.functional.normalize(y.float(), dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)


class EmbeddingModel(Protocol):
    """What every encoder kind offers (a torch network, SFace through ONNX Runtime, a fusion of encoders): it takes
    (N, S, S, 3) uint8 crops at ``input_size`` — aligned on idsvc's template, or a face that filled its photo taken
    whole — with where their five landmarks lie ((N, 5, 2) crop pixels; None: on the template), and returns (N, dim)
    float32 embeddings with norm 1. An encoder with its own template (SFace) re-aligns each crop from its
    landmarks; one trained on idsvc's crops takes them as they are."""

    card: dict[str, Any]
    path: Path | None
    device: Any

    @property
    def version(self) -> str: ...

    @property
    def input_size(self) -> int: ...

    @property
    def dim(self) -> int: ...

    @property
    def threshold(self) -> float | None: ...

    def embed(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray: ...


def load_encoder(path: str | Path, *, device: str = "auto", batch_size: int = 32) -> EmbeddingModel:
    """Any checkpoint kind (torch, onnx, fused). Raises ``file_not_found`` or ``model_invalid``."""
    return _from_blob(read_checkpoint(path), Path(path), device, batch_size)


def _from_blob(blob: dict[str, Any], path: Path | None, device: str, batch_size: int) -> EmbeddingModel:
    kind = blob["card"].get("kind", "torch")
    if kind == "onnx":
        from idsvc.sface import SFaceEncoder

        return SFaceEncoder(blob["onnx"], blob["card"], path, batch_size)
    if kind == "fused":
        from idsvc.fused import FusedEncoder

        members = [(float(m["weight"]), _from_blob(m["blob"], None, device, batch_size)) for m in blob["members"]]
        return FusedEncoder(members, blob["card"], path)
    return _torch_encoder(blob, path, device, batch_size)


def _torch_encoder(blob: dict[str, Any], path: Path | None, device: str, batch_size: int) -> Encoder:
    card = blob["card"]
    dev = resolve_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = nets.build(card["arch"], card["embedding_size"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise IdsvcError("model_invalid", f"{path}: weights do not fit architecture {card['arch']}: {exc}",
                         path=str(path)) from None
    model.eval().to(dev)
    return Encoder(model=model, card=card, device=dev, path=path, batch_size=batch_size)


def update_card(path: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a checkpoint with card fields changed (weights untouched, so the model version stays)."""
    read_checkpoint(path)  # valid, members included
    blob = _read_file(Path(path))  # rewritten as stored: linked members stay links
    blob["card"].update(changes)
    tmp = Path(str(path) + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    card = dict(blob["card"], file_sha256=file_sha256(Path(path)))
    Path(str(path) + ".card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card
