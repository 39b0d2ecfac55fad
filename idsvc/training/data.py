"""Training data: one folder of photos per identity, put through the service's own detect + align once and cached,
so training sees exactly what serving sees; and the augmentation applied to each batch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from idsvc.errors import IdsvcError
from idsvc.faces.images import IMAGE_SUFFIXES

Event = Callable[[dict[str, Any]], None]


def list_identities(root: Path, min_per: int, max_ids: int, max_per: int) -> tuple[list[Path], np.ndarray, list[str]]:
    """(photo paths, (N,) int64 labels, identity names). Raises ``file_not_found`` and ``not_enough_data``."""
    if not root.is_dir():
        raise IdsvcError("file_not_found", f"{root}: no such folder", path=str(root))
    files: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        imgs = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if max_per:
            imgs = imgs[:max_per]
        if len(imgs) < min_per:
            continue
        names.append(d.name)
        files += imgs
        labels += [len(names) - 1] * len(imgs)
        if max_ids and len(names) >= max_ids:
            break
    if len(names) < 2:
        raise IdsvcError("not_enough_data", f"{root}: need at least two identity folders with {min_per}+ photos")
    return files, np.array(labels, dtype=np.int64), names


def cache_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def cached_crops(pipeline: Any, files: list[Path], cache_dir: Path, event: Event | None,
                 what: str) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops of ``files`` ((N, S, S, 3) uint8) and whether a face was found, cached on disk."""
    key = cache_key(pipeline.crop_size, "idsvc-5pt-v1", *[f"{f}:{f.stat().st_size}" for f in files])
    path = cache_dir / "train" / f"crops-{what}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["crops"], z["found"]
    crops, found = [], []
    chunk = 256
    for i in range(0, len(files), chunk):
        c, f, _ = pipeline.eval_crops(files[i:i + chunk])
        crops.append(c)
        found.append(f)
        if event:
            event({"phase": "prepare", "what": what, "done": min(i + chunk, len(files)), "total": len(files)})
    out_c, out_f = np.concatenate(crops), np.concatenate(found)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, crops=out_c, found=out_f)
    tmp.replace(path)
    return out_c, out_f


def augment(x: torch.Tensor, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Uint8-range float crops (N, 3, S, S): random flip, brightness/contrast jitter and a small random shift.

    Runs where ``x`` and ``gen`` are: on a GPU the crops stay there, so a batch costs no host work at all."""
    n, dev = x.shape[0], x.device
    if flip:
        mask = torch.rand(n, generator=gen, device=dev) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    b = (torch.rand(n, 1, 1, 1, generator=gen, device=dev) - 0.5) * 50
    c = 1 + (torch.rand(n, 1, 1, 1, generator=gen, device=dev) - 0.5) * 0.4
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * c + mean + b).clamp(0, 255)
    pad = max(2, x.shape[-1] // 20)
    padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx, dy = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen, device=dev))
    s = x.shape[-1]
    return padded[:, :, dy:dy + s, dx:dx + s]
