"""The model commands: a checkpoint's card, importing FaceNet (Keras) and SFace (ONNX) and fusing encoders — each
reads or writes a checkpoint and answers with its card. (Training is its own package, ``idsvc.training``.)"""

from __future__ import annotations

from pathlib import Path

from idsvc.home import Home
from idsvc.results import ModelInfo, ModelWritten


def model_info(home: Home, path: Path | None = None) -> ModelInfo:
    """A checkpoint's card; by default the active model's (no weights are loaded into a network)."""
    from idsvc.encoders.checkpoint import model_version, read_checkpoint

    p = path or home.model.path
    card = read_checkpoint(p)["card"]
    card["version"] = model_version(card)
    return ModelInfo(path=str(p), active=path is None, card=card)


def import_facenet_keras(h5: Path, out: Path, *, name: str, fp16: bool) -> ModelWritten:
    from idsvc.encoders.keras_import import import_to_checkpoint

    return ModelWritten(path=str(out), card=import_to_checkpoint(h5, out, name=name, fp16=fp16))


def import_sface(onnx_path: Path | None, out: Path, *, name: str) -> ModelWritten:
    from idsvc.encoders.sface import import_sface as write

    return ModelWritten(path=str(out), card=write(onnx_path, out, name=name))


def fuse(paths: list[Path], weights: list[float], out: Path, *, name: str, link: bool = False) -> ModelWritten:
    from idsvc.encoders.load import fuse as write

    return ModelWritten(path=str(out), card=write(paths, weights, out, name=name, link=link))
