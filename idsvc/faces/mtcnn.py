"""facenet-pytorch's MTCNN cascade, with its weights and its box arithmetic, run faster on a batch of photos.

Why not ``MTCNN.detect``: profiled on 200 LFW photos on 2 CPU cores (4.5 s), a third of the time went to cutting
every candidate box out of the photo one at a time (13,000 ``interpolate`` calls for the 24- and 48-px inputs of the
second and third stages) and another third to PyTorch's max-pooling and small convolutions in those stages. Here the
candidates of a stage are cut and resampled in one vectorised gather from a summed-area table — the same area
average ``interpolate(mode="area")`` takes, bin for bin — and on the CPU the three networks run under ONNX Runtime,
exported once and cached like the encoders' exports (see ``cpu_networks`` for why the first too). Everything else —
the scale pyramid, the proposal boxes, the non-maximum suppressions, the box regression — is facenet-pytorch's own
code, called as it is, so detections match ``MTCNN.detect`` (tested: the same faces on real photos, boxes and
landmarks within 0.01 px). On those 200 photos detection takes 2.3–2.9 s against facenet-pytorch's 3.9–4.6 s in the
same runs (bench/enroll.py, 1.6–2.0×): what is left is the networks' arithmetic.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

Net = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


def detect_faces(images: np.ndarray, nets: tuple[Net, Net, Net], *, min_face: int,
                 thresholds: tuple[float, float, float], factor: float = 0.709,
                 device: torch.device | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(B, H, W, 3) uint8 RGB photos of one size → per photo (boxes (n, 4), probs (n,), landmarks (n, 5, 2)), all
    float32 in pixels, largest box first (as ``MTCNN.detect`` orders them); n may be 0."""
    from facenet_pytorch.models.utils.detect_face import (
        batched_nms_numpy,
        bbreg,
        generateBoundingBox,
        imresample,
        pad,
        rerec,
    )
    from torchvision.ops.boxes import batched_nms

    pnet, rnet, onet = nets
    imgs = torch.from_numpy(images.astype(np.float32)).to(device).permute(0, 3, 1, 2)
    batch, (h, w) = len(imgs), imgs.shape[2:4]
    m = 12.0 / min_face
    scales: list[float] = []
    scale, minl = m, min(h, w) * m
    while minl >= 12:  # repeated multiplication, as facenet-pytorch does: the same scales to the last bit
        scales.append(scale)
        scale, minl = scale * factor, minl * factor

    # Stage 1: proposals at every scale, NMS within each scale and photo, then within each photo.
    found, owners, picks, offset = [], [], [], 0
    for scale in scales:
        reg, probs = pnet((imresample(imgs, (int(h * scale + 1), int(w * scale + 1))) - 127.5) * 0.0078125)
        boxes_s, owners_s = generateBoundingBox(reg, probs[:, 1], scale, thresholds[0])
        found.append(boxes_s)
        owners.append(owners_s)
        picks.append(batched_nms(boxes_s[:, :4], boxes_s[:, 4], owners_s, 0.5) + offset)
        offset += boxes_s.shape[0]
    keep = torch.cat(picks)
    boxes, owner = torch.cat(found)[keep], torch.cat(owners)[keep]
    keep = batched_nms(boxes[:, :4], boxes[:, 4], owner, 0.7)
    boxes, owner = boxes[keep], owner[keep]
    regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                         boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh, boxes[:, 4]], dim=1)
    boxes = rerec(boxes)

    # Stage 2: refine on 24-px crops.
    tables: dict[int, torch.Tensor] = {}
    if len(boxes):
        reg, probs = rnet((_cut(imgs, owner, pad(boxes, w, h), 24, tables) - 127.5) * 0.0078125)
        score = probs[:, 1]
        ok = score > thresholds[1]
        boxes, owner, reg = torch.cat((boxes[ok, :4], score[ok, None]), dim=1), owner[ok], reg[ok]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], owner, 0.7)
        boxes = rerec(bbreg(boxes[keep], reg[keep]))
        owner = owner[keep]

    # Stage 3: output boxes and landmarks on 48-px crops.
    points = torch.zeros(0, 5, 2, device=imgs.device)
    if len(boxes):
        reg, marks, probs = onet((_cut(imgs, owner, pad(boxes, w, h), 48, tables) - 127.5) * 0.0078125)
        score = probs[:, 1]
        ok = score > thresholds[2]
        boxes, owner, reg, marks = torch.cat((boxes[ok, :4], score[ok, None]), dim=1), owner[ok], reg[ok], marks[ok]
        bw, bh = boxes[:, 2:3] - boxes[:, 0:1] + 1, boxes[:, 3:4] - boxes[:, 1:2] + 1
        points = torch.stack((bw * marks[:, :5] + boxes[:, 0:1] - 1, bh * marks[:, 5:] + boxes[:, 1:2] - 1), dim=2)
        boxes = bbreg(boxes, reg)
        keep = batched_nms_numpy(boxes[:, :4], boxes[:, 4], owner, 0.7, "Min")
        boxes, owner, points = boxes[keep], owner[keep], points[keep]

    boxes_np, points_np, owner_np = boxes.cpu().numpy(), points.cpu().numpy(), owner.cpu().numpy()
    out = []
    for b in range(batch):
        mine = owner_np == b
        bx, pt = boxes_np[mine], points_np[mine]
        order = np.argsort((bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1]))[::-1]
        out.append((bx[order, :4].astype(np.float32), bx[order, 4].astype(np.float32),
                    pt[order].astype(np.float32)))
    return out


def onet_points(image: np.ndarray, box: np.ndarray, onet: Net, rounds: int = 2,
                device: torch.device | None = None) -> tuple[np.ndarray, float]:
    """MTCNN's last stage alone: the five points (5, 2) and the face probability O-Net gives for ``box`` (x1, y1,
    x2, y2) in ``image``, the box squared and, after each round, moved by O-Net's own box regression — as the
    cascade does with R-Net's box. The box must lie inside the photo (give the photo a border first)."""
    from facenet_pytorch.models.utils.detect_face import bbreg, pad, rerec

    imgs = torch.from_numpy(image.astype(np.float32)).to(device).permute(2, 0, 1)[None]
    h, w = image.shape[:2]
    owner = torch.zeros(1, dtype=torch.long, device=imgs.device)
    boxes = torch.tensor([[*map(float, box[:4]), 1.0]], dtype=torch.float32, device=imgs.device)
    for _ in range(rounds):
        boxes = rerec(boxes)
        reg, marks, probs = onet((_cut(imgs, owner, pad(boxes, w, h), 48) - 127.5) * 0.0078125)
        bw, bh = boxes[:, 2:3] - boxes[:, 0:1] + 1, boxes[:, 3:4] - boxes[:, 1:2] + 1
        points = torch.stack((bw * marks[:, :5] + boxes[:, 0:1] - 1, bh * marks[:, 5:] + boxes[:, 1:2] - 1), dim=2)
        boxes = bbreg(torch.cat((boxes[:, :4], probs[:, 1:2]), dim=1), reg)
    return points[0].cpu().numpy().astype(np.float32), float(probs[0, 1])


def _cut(imgs: torch.Tensor, owner: torch.Tensor, bounds: tuple[np.ndarray, ...], size: int,
         tables: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Each box's pixels (rows ``y-1 … ey``, columns ``x-1 … ex``, as facenet-pytorch's ``pad`` gives them)
    area-averaged to (K, 3, size, size) float32, in one gather per photo from its summed-area table.

    ``interpolate(mode="area")`` is an adaptive average pool: output cell i averages input rows
    ⌊i·n/size⌋ … ⌈(i+1)·n/size⌉ − 1; the same bins are summed here from the table. A box with no pixels inside the
    photo gives zeros (facenet-pytorch would fail on it). ``tables`` keeps photos' tables between calls."""
    tables = {} if tables is None else tables
    y, ey, x, ex = (torch.as_tensor(np.asarray(v, dtype=np.int64), device=imgs.device) for v in bounds)
    y0, x0 = y - 1, x - 1
    hk, wk = (ey - y0).clamp_min(0), (ex - x0).clamp_min(0)
    i = torch.arange(size, device=imgs.device)
    rows0 = y0[:, None] + torch.div(i * hk[:, None], size, rounding_mode="floor")
    rows1 = y0[:, None] + torch.div((i + 1) * hk[:, None] + size - 1, size, rounding_mode="floor")
    cols0 = x0[:, None] + torch.div(i * wk[:, None], size, rounding_mode="floor")
    cols1 = x0[:, None] + torch.div((i + 1) * wk[:, None] + size - 1, size, rounding_mode="floor")
    out = torch.empty(len(owner), size, size, imgs.shape[1], dtype=torch.int32, device=imgs.device)
    for b in torch.unique(owner).tolist():
        k = (owner == b).nonzero().squeeze(1)
        table = tables.get(b)
        if table is None:
            table = _summed_area(imgs[b])
            if imgs.shape[2] * imgs.shape[3] <= KEEP_TABLES_UP_TO:
                tables[b] = table
        # Rows of the flattened table, one per (bin row, bin column) corner: a third faster than 2-D indexing.
        flat, width = table.view(-1, table.shape[2]), table.shape[1]
        r0, r1 = rows0[k][:, :, None] * width, rows1[k][:, :, None] * width
        c0, c1 = cols0[k][:, None, :], cols1[k][:, None, :]
        out[k] = (flat[r1 + c1] - flat[r0 + c1] - flat[r1 + c0] + flat[r0 + c0]).to(torch.int32)
    area = ((rows1 - rows0)[:, :, None] * (cols1 - cols0)[:, None, :]).clamp_min(1)
    # Both are whole numbers below 2²⁴, exact in float32: the quotient is correctly rounded.
    return (out.float() / area[..., None].float()).permute(0, 3, 1, 2).contiguous()


#: Photos (as detected) up to this many pixels keep their summed-area tables from the second stage to the third.
KEEP_TABLES_UP_TO = 512 * 512


def _summed_area(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) whole-number pixels → (H+1, W+1, 3) summed-area table. Integers, so exact: int32 while the
    photo's sum fits (it does at the default detect_max_side), int64 above that; gathering int32 is a third faster
    than float64."""
    kind = torch.int32 if image.shape[1] * image.shape[2] * 255 < 2 ** 31 else torch.int64
    pixels = image.permute(1, 2, 0).round().to(kind)
    return torch.nn.functional.pad(pixels.cumsum(0, dtype=kind).cumsum(1, dtype=kind), (0, 0, 1, 0, 1, 0))


def cpu_networks(mtcnn: Any, cache_dir: Path) -> tuple[Net, Net, Net]:
    """MTCNN's networks for the CPU, under ONNX Runtime (the second and third 2.8× and 2.1× PyTorch on 2 cores, on
    the candidates of 200 LFW photos; the first about as fast as PyTorch over the scale pyramid), exported once per
    weights into ``cache_dir`` (any failure leaves a network on PyTorch, with a warning).

    Why the first too, at no gain in speed: ONNX Runtime computes each photo of a batch exactly as it computes that
    photo alone, while PyTorch's convolutions round differently at some batch sizes (1e-7, which moves a landmark by
    1e-5 px and can turn one pixel of the aligned crop). So a photo detected in a batch gives the bit-identical crop
    it gives alone, which the int8 encoder (``idsvc.encoders.int8``), sensitive to one pixel, needs for batched
    enroll to give the one-photo templates (tested)."""
    return (_on_runtime(mtcnn.pnet, "pnet", (2, 3, 40, 40), {0: "n", 2: "h", 3: "w"}, cache_dir),
            _on_runtime(mtcnn.rnet, "rnet", (2, 3, 24, 24), {0: "n"}, cache_dir),
            _on_runtime(mtcnn.onet, "onet", (2, 3, 48, 48), {0: "n"}, cache_dir))


#: Input pixels per ONNX Runtime call of an MTCNN stage: a batch of 16 photos at the first pyramid scale, or
#: thousands of candidates, is run a few at a time (4 photos at 151 × 151, 43 candidates at 48 × 48), so the
#: activations stay in the CPU's caches: on 2 cores the first stage ran ~4–18% and the third ~8% faster. Each photo or
#: candidate is computed alone either way (batch-invariant, tested), so the faces do not change.
PIXELS_PER_CALL = 100_000


def _on_runtime(net: torch.nn.Module, name: str, shape: tuple[int, ...], axes: dict[int, str],
                cache_dir: Path) -> Net:
    """``net`` (an MTCNN stage) as a callable on an ONNX Runtime session, torch tensors in and out."""
    from idsvc.onnx_runtime import OnnxNetwork, export_onnx, prelu_as_depthwise

    digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in net.state_dict().values()))
    outputs = 3 if name == "onet" else 2
    try:
        path = cache_dir / "onnx" / f"mtcnn-{name}-{digest.hexdigest()[:12]}.onnx"
        session = OnnxNetwork(prelu_as_depthwise(export_onnx(net, shape, path, outputs=outputs,
                                                             batch_axes=axes).read_bytes()))
    except Exception as exc:  # noqa: BLE001 - PyTorch is always there to fall back to
        log.warning("ONNX Runtime path unavailable for MTCNN's %s (%s: %s); using PyTorch", name,
                    exc.__class__.__name__, exc)
        return net

    def run(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        step = max(1, PIXELS_PER_CALL // (x.shape[2] * x.shape[3]))
        if len(x) <= step:
            return tuple(torch.from_numpy(y) for y in session.run_all(x.numpy()))
        parts = [session.run_all(x[i:i + step].numpy()) for i in range(0, len(x), step)]
        return tuple(torch.from_numpy(np.concatenate(ys)) for ys in zip(*parts))

    return run
