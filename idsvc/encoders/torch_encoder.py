"""A torch network as an encoder (FaceNet's Inception-ResNet, the compact training architecture): preprocessing,
batched embedding on its device, and its ONNX export for the CPU path (``idsvc.encoders.load.accelerate``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from idsvc.devices import resolve_device
from idsvc.encoders import nets
from idsvc.encoders.protocol import CardProperties
from idsvc.errors import IdsvcError


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


@dataclass
class Encoder(CardProperties):
    """A loaded model ready to embed aligned crops."""

    model: torch.nn.Module
    card: dict[str, Any]
    device: torch.device
    path: Path | None = None
    batch_size: int = 32
    runtime: Any = None  # the same network under ONNX Runtime, on the CPU (``encoders.load.accelerate``)
    numerics: str = "float32"  # "int8" when ``runtime`` is the quantized network (``idsvc.encoders.int8``)

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


def from_blob(blob: dict[str, Any], path: Path | None, device: str, batch_size: int) -> Encoder:
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


def exported_onnx(encoder: Encoder, cache_dir: Path) -> Path:
    """The encoder's network as ONNX, exported once per model version into ``cache_dir``."""
    from idsvc.onnx_runtime import export_onnx

    size = encoder.input_size
    return export_onnx(encoder.model, (2, 3, size, size), cache_dir / "onnx" / f"{encoder.version}.onnx")
