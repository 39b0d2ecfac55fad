"""Running networks on the CPU under ONNX Runtime: one session factory with idsvc's options, a callable network
(float32 arrays in and out), the PRelu rewrite that keeps ONNX Runtime's fast layout, and a cached torch → ONNX
export. Shared by the face detector (MTCNN's stages) and the encoders (FaceNet, SFace), which is why it sits below
both: neither imports the other.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class OnnxNetwork:
    """An exported network (a file, or the model's bytes) behind ONNX Runtime: float32 arrays in and out."""

    def __init__(self, source: Path | bytes) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(source if isinstance(source, bytes) else str(source), session_options(),
                                            providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The network's first output (an encoder's (N, D) embeddings for (N, 3, S, S) input)."""
        return self.run_all(x)[0]

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})
        return out


def prelu_as_depthwise(raw: bytes) -> bytes:
    """The model with each per-channel ``PRelu(x, a)`` written as ``Conv₁ₓ₁(Relu(x), 1 − a) + Conv₁ₓ₁(x, a)``
    (depthwise: one weight per channel), which is the same function: (1 − a)·x + a·x for x > 0, a·x below.

    Why: ONNX Runtime runs convolutions in its blocked NCHWc layout, which has no PRelu, so every PRelu cost a
    layout conversion out and back in, besides itself — 43% of an SFace call. Relu, depthwise convolutions and their
    sum all stay in the blocked layout: SFace 14.2 → 8.2 ms per photo on 2 cores (embeddings within 2e-6, tested),
    MTCNN's second and third stages 1.5× faster. Any other PRelu (one slope, or after a dense layer) is left as it
    is."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(raw)
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes, weights = [], []
    for node in graph.node:
        slope = consts.get(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None or slope.ndim != 3 or slope.shape[1:] != (1, 1):  # per channel of an NCHW input
            nodes.append(node)
            continue
        x, y, c = node.input[0], node.output[0], slope.shape[0]
        for suffix, w in (("_keep", 1 - slope), ("_slope", slope)):
            weights.append(numpy_helper.from_array(w.astype(np.float32).reshape(c, 1, 1, 1), y + suffix))
        nodes += [helper.make_node("Relu", [x], [y + "_relu"]),
                  helper.make_node("Conv", [y + "_relu", y + "_keep"], [y + "_pos"], group=c, kernel_shape=[1, 1]),
                  helper.make_node("Conv", [x, y + "_slope"], [y + "_all"], group=c, kernel_shape=[1, 1]),
                  helper.make_node("Add", [y + "_pos", y + "_all"], [y])]
    if not weights:
        return raw
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(weights)
    return model.SerializeToString()


def session_options() -> Any:
    """Options for every ONNX Runtime session idsvc opens: quiet, and with its worker threads sleeping rather than
    spinning between calls. A process holds four sessions (MTCNN's two refining stages, FaceNet, SFace), each with
    a thread per core; spinning, they fought each other and PyTorch for the cores while another stage ran: on 2 cores
    a library enroll with the shipped fusion took 9.0 s for 200 photos spinning and 7.8 s not."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def export_onnx(net: Any, example_shape: tuple[int, ...], path: Path, *, outputs: int = 1,
                batch_axes: dict[int, str] | None = None) -> Path:
    """``net`` exported to ONNX at ``path`` unless a file is there already (written to a temp name, then renamed,
    so a process killed mid-export leaves no half file). Input "x" (dynamic axes ``batch_axes``, default the batch),
    output "y", or "y0", "y1", … with the same axes dynamic (a fully convolutional net's outputs change size with its
    input). Tensor names are what the shipped int8 ranges (``idsvc.encoders.int8``) are keyed by."""
    import torch

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    names = ["y"] if outputs == 1 else [f"y{i}" for i in range(outputs)]  # "y": the int8 ranges name it
    axes = batch_axes or {0: "n"}
    out_axes = {k: v if k == 0 else f"{v}_out" for k, v in axes.items()}  # only the batch keeps the input's size
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(net.eval(), (torch.zeros(*example_shape),), str(tmp), input_names=["x"], output_names=names,
                          dynamic_axes={"x": axes, **{y: out_axes for y in names}}, dynamo=False,
                          opset_version=17)
    os.replace(tmp, path)
    log.info("exported %s to ONNX for the CPU path", path.name)
    return path
