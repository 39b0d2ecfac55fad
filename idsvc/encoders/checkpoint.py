"""The encoder checkpoint on disk: weights + model card, written atomically, read back and checked, and the model
version that every embedding carries.

A checkpoint is one ``torch.save`` file: ``{"format": "idsvc-encoder/1", "card": {...}, "state_dict": {...}}``.
The card says how to rebuild and feed the network; its ``weights_sha256`` is checked on load. The model version —
``<name>-<12 hex>`` over the weights hash, embedding size and preprocessing — travels with every embedding, so that
embeddings from different models are never compared. torch is imported where a file is read or written, so reading a
card (``status``) never loads it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idsvc.checksums import file_sha256
from idsvc.errors import IdsvcError

if TYPE_CHECKING:
    import torch

FORMAT = "idsvc-encoder/1"
NORMALIZATIONS = ("prewhiten", "fixed")


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors in key order (names, dtypes, shapes and bytes): stable across re-saves."""
    import torch

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
    from idsvc.encoders import nets

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
    import torch

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
    import torch

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


def update_card(path: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a checkpoint with card fields changed (weights untouched, so the model version stays)."""
    import torch

    read_checkpoint(path)  # valid, members included
    blob = _read_file(Path(path))  # rewritten as stored: linked members stay links
    blob["card"].update(changes)
    tmp = Path(str(path) + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    card = dict(blob["card"], file_sha256=file_sha256(Path(path)))
    Path(str(path) + ".card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def sidecar_card(path: Path) -> dict[str, Any] | None:
    """The card in ``<checkpoint>.card.json`` if it describes this very file (its ``file_sha256`` matches): what
    ``status`` reads instead of loading torch."""
    side = path.with_name(path.name + ".card.json")
    try:
        card = json.loads(side.read_text())
        digest = file_sha256(path)
    except (OSError, ValueError):
        return None
    return card if card.get("file_sha256") == digest and "version" in card else None
