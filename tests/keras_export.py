"""The shipped weights written back in facenet_keras's .h5 layout: lets the importer be tested end to end offline,
without the 90 MB original. Test-only, so it lives here and not in the library."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from idsvc.encoders.keras_import import keras_name
from idsvc.encoders.nets import InceptionResnetV1Net


def _to_keras(kind: str, array: np.ndarray) -> np.ndarray:
    if kind == "kernel" and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if kind == "kernel" and array.ndim == 2:
        return array.T
    return array


def export_facenet_keras(model: InceptionResnetV1Net, path: str | Path) -> int:
    """Write the weights back in the Keras file's layout (gammas of 1 omitted, as TF-slim does).

    Lets the importer be tested end to end without the 90 MB original. Returns the number of tensors written.
    """
    import h5py

    count = 0
    with h5py.File(path, "w") as fh:
        root = fh.create_group("model_weights")
        for name, tensor in model.state_dict().items():
            key = keras_name(name)
            if key is None:
                continue
            array = tensor.detach().float().cpu().numpy()
            if key[1] == "gamma" and np.allclose(array, 1.0):
                continue
            group = root.require_group(key[0]).require_group(key[0])
            group.create_dataset(f"{key[1]}:0", data=_to_keras(key[1], array))
            count += 1
    return count
