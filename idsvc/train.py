"""``idsvc train``: softmax + center loss on a folder of identities, from scratch or fine-tuning a checkpoint.

Photos go through the service's own detect + align once and the crops are cached, so training sees exactly what
serving sees. On a CPU, fine-tuning a large network is made affordable by freezing its early stages and caching their
output once (``freeze_through``): an epoch then costs seconds to minutes instead of most of an hour. Each epoch is
validated on LFW (the frozen prefix of LFW crops is cached too), checkpointed, and can be resumed.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from idsvc import nets
from idsvc.center_loss import CenterLoss
from idsvc.encoder import make_card, model_version, preprocess, read_checkpoint, resolve_device, save_checkpoint
from idsvc.errors import IdsvcError
from idsvc.evaluate import read_pairs, tar_at_far, threshold_at_far, verification_report
from idsvc.imageio import IMAGE_SUFFIXES
from idsvc.settings import Settings

Event = Callable[[dict[str, Any]], None]


@dataclass
class TrainConfig:
    data_dir: Path
    out: Path
    arch: str = "inception_resnet_v1"
    init: Path | None = None
    freeze_through: str | None = None   # a stage name of the architecture; None = train everything
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3                     # new layers: classifier (and, from scratch, everything)
    lr_backbone: float = 1e-4            # pretrained layers when fine-tuning
    weight_decay: float = 5e-4
    optimizer: str = "adamw"             # or "sgd"
    center_lambda: float = 0.01          # λ: weight of the center loss
    center_alpha: float = 0.5            # α: centre update rate
    embedding_size: int = 128
    warmup_epochs: int = 1               # when fine-tuning, train only the classifier first
    flip: bool = True                    # horizontal flips (cached twice in frozen mode)
    min_per_identity: int = 2
    max_identities: int = 0              # 0 = all
    max_per_identity: int = 0            # 0 = all
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    lfw_dir: Path | None = None          # validate on LFW each epoch when given
    name: str = "idsvc-trained"
    fp16: bool = True
    max_steps: int = 0                   # stop after this many steps (tests, smoke runs); 0 = no limit

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class History:
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)


# -- data ----------------------------------------------------------------------------------------------------------
def list_identities(root: Path, min_per: int, max_ids: int, max_per: int) -> tuple[list[Path], np.ndarray, list[str]]:
    if not root.is_dir():
        raise IdsvcError("file_not_found", f"{root}: no such folder", path=str(root))
    files, labels, names = [], [], []
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


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def cached_crops(pipeline: Any, files: list[Path], cache_dir: Path, event: Event | None,
                 what: str) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops of ``files`` ((N, S, S, 3) uint8) and whether a face was found, cached on disk."""
    key = _key(pipeline.crop_size, "idsvc-5pt-v1", *[f"{f}:{f.stat().st_size}" for f in files])
    path = cache_dir / "train" / f"crops-{what}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["crops"], z["found"]
    crops, found = [], []
    chunk = 256
    for i in range(0, len(files), chunk):
        c, f = pipeline.eval_crops(files[i:i + chunk])
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


def _prefix(model: nn.Module, crops: np.ndarray, stage: str, norm: str, device: torch.device, flip: bool,
            batch: int = 64) -> torch.Tensor:
    """Output of the frozen stages for every crop (and its mirror image), float16 on the CPU."""
    outs = []
    model.eval()
    with torch.no_grad():  # not inference_mode: these tensors feed training, which saves them for backward
        for i in range(0, len(crops), batch):
            x = preprocess(crops[i:i + batch], norm).to(device)
            if flip:
                x = torch.cat([x, x.flip(3)])
            outs.append(model.forward_until(x, stage).half().cpu())
    return torch.cat(outs) if not flip else _interleave(outs)


def _interleave(outs: list[torch.Tensor]) -> torch.Tensor:
    """Reorder per-batch [originals, mirrors] into ([all originals], [all mirrors]) stacked on a new dim 1."""
    origs, mirrors = [], []
    for o in outs:
        h = len(o) // 2
        origs.append(o[:h])
        mirrors.append(o[h:])
    return torch.stack([torch.cat(origs), torch.cat(mirrors)], dim=1)


def _augment(x: torch.Tensor, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Uint8-range float crops (N, 3, S, S): random flip, brightness/contrast jitter and a small random shift."""
    n = x.shape[0]
    if flip:
        mask = torch.rand(n, generator=gen) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    b = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 50
    c = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * c + mean + b).clamp(0, 255)
    pad = max(2, x.shape[-1] // 20)
    padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx, dy = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
    s = x.shape[-1]
    return padded[:, :, dy:dy + s, dx:dx + s]


# -- the loop ------------------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, settings: Settings, event: Event | None = None) -> dict[str, Any]:
    """Train, validate, checkpoint every epoch, and write the final checkpoint with its model card."""
    from idsvc.pipeline import Pipeline

    if cfg.arch not in nets.ARCHS:
        raise IdsvcError("invalid_argument", f"--arch must be one of {', '.join(nets.ARCHS)}")
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    amp = device.type == "cuda"

    # Model (fresh, or the init checkpoint's weights).
    norm = "prewhiten" if cfg.arch == "inception_resnet_v1" else "fixed"
    model = nets.build(cfg.arch, cfg.embedding_size)
    init_version = None
    if cfg.init is not None:
        blob = read_checkpoint(cfg.init)
        card0 = blob["card"]
        if card0["arch"] != cfg.arch or card0["embedding_size"] != cfg.embedding_size:
            raise IdsvcError("model_invalid", f"--init {cfg.init} is {card0['arch']}/{card0['embedding_size']}-d, "
                             f"not {cfg.arch}/{cfg.embedding_size}-d")
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
        norm = card0["preprocessing"]["normalize"]
        init_version = model_version(card0)
    if cfg.freeze_through is not None and cfg.freeze_through not in model.STAGES:
        raise IdsvcError("invalid_argument", f"--freeze-through must be one of {', '.join(model.STAGES)}")
    model.to(device)
    size = nets.INPUT_SIZE[cfg.arch]

    # Data: crops through the service's own detect + align, cached.
    files, labels, names = list_identities(cfg.data_dir, cfg.min_per_identity, cfg.max_identities,
                                           cfg.max_per_identity)
    enc_stub = type("E", (), {"input_size": size})()
    pipeline = Pipeline(settings, encoder=enc_stub)  # type: ignore[arg-type]
    crops, found = cached_crops(pipeline, files, settings.cache_dir, event, "train")
    keep = found  # photos with no detected face teach the wrong thing; leave them out
    crops, labels = crops[keep], labels[keep]
    num_classes = len(names)

    lfw = None
    if cfg.lfw_dir is not None:
        pairs = read_pairs(cfg.lfw_dir / "pairs.txt", cfg.lfw_dir / "images")
        photos = sorted({p for pr in pairs for p in (pr.a, pr.b)})
        lfw_crops, _ = cached_crops(pipeline, photos, settings.cache_dir, event, "lfw")
        index = {p: i for i, p in enumerate(photos)}
        lfw = (lfw_crops, np.array([[index[p.a], index[p.b]] for p in pairs]),
               np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))

    # Frozen prefix: computed once, cached on disk per (init weights, stage, data).
    stage = cfg.freeze_through
    feats = lfw_feats = None
    if stage is not None:
        for p in model.parameters():
            p.requires_grad_(False)
        suffix = model.STAGES[model.STAGES.index(stage) + 1:]
        for name_ in suffix:
            for p in model.stage(name_).parameters():
                p.requires_grad_(True)
        for p in model.head_parameters():
            p.requires_grad_(True)
        pkey = _key(init_version or f"seed{cfg.seed}", stage, len(crops), cfg.flip, crops[:4].sum())
        ppath = settings.cache_dir / "train" / f"prefix-{pkey}.pt"
        if ppath.is_file():
            feats = torch.load(ppath, weights_only=True)
        else:
            if event:
                event({"phase": "prefix", "what": "train", "total": len(crops)})
            feats = _prefix(model, crops, stage, norm, device, cfg.flip)
            ppath.parent.mkdir(parents=True, exist_ok=True)
            torch.save(feats, ppath)
        if lfw is not None:
            lkey = _key(init_version or f"seed{cfg.seed}", stage, "lfw", len(lfw[0]))
            lpath = settings.cache_dir / "train" / f"prefix-lfw-{lkey}.pt"
            if lpath.is_file():
                lfw_feats = torch.load(lpath, weights_only=True)
            else:
                if event:
                    event({"phase": "prefix", "what": "lfw", "total": len(lfw[0])})
                lfw_feats = _prefix(model, lfw[0], stage, norm, device, False)
                torch.save(lfw_feats, lpath)

    classifier = nn.Linear(cfg.embedding_size, num_classes).to(device)
    center = CenterLoss(num_classes, cfg.embedding_size, cfg.center_alpha).to(device)
    backbone = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": backbone, "lr": cfg.lr_backbone if cfg.init else cfg.lr},
              {"params": classifier.parameters(), "lr": cfg.lr}]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, momentum=0.9, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    else:
        raise IdsvcError("invalid_argument", "--optimizer must be adamw or sgd")
    base_lrs = [g["lr"] for g in opt.param_groups]
    steps_per_epoch = max(1, math.ceil(len(labels) / cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    ckpt_dir = cfg.out.parent / (cfg.out.stem + ".checkpoints")
    history = History()
    start_epoch, step = 0, 0
    if cfg.resume:
        latest = sorted(ckpt_dir.glob("epoch-*.pt"))
        if not latest:
            raise IdsvcError("file_not_found", f"--resume: no checkpoints in {ckpt_dir}")
        st = torch.load(latest[-1], weights_only=False)
        model.load_state_dict(st["model"])
        classifier.load_state_dict(st["classifier"])
        center.load_state_dict(st["center"])
        opt.load_state_dict(st["optimizer"])
        start_epoch, step = st["epoch"], st["step"]
        history = History(**st["history"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        if event:
            event({"phase": "resume", "epoch": start_epoch, "step": step, "from": str(latest[-1])})
    elif cfg.init is not None and feats is not None:
        with torch.no_grad():  # start each centre at its class mean of the pretrained features
            model.eval()
            f0 = _forward(model, feats[:, 0] if cfg.flip else feats, stage, device)
            center.init_centers(f0, torch.from_numpy(labels).to(device))

    def run_step(idx: np.ndarray, epoch: int) -> dict[str, float]:
        nonlocal step
        y = torch.from_numpy(labels[idx]).to(device)
        if feats is not None:
            f = feats[torch.from_numpy(idx)]
            if cfg.flip:
                pick = (torch.rand(len(idx), generator=gen) < 0.5).long()
                f = f[torch.arange(len(idx)), pick]
            x = f.to(device).float()
        else:
            raw = torch.from_numpy(crops[idx]).permute(0, 3, 1, 2).float()
            raw = _augment(raw, cfg.flip, gen)
            x = preprocess(raw.permute(0, 2, 3, 1).round().byte().numpy(), norm).to(device)
        warm = cfg.init is not None and epoch < cfg.warmup_epochs
        frac = step / max(1, total_steps)
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * frac))
        if warm:
            opt.param_groups[0]["lr"] = 0.0
        model.train()
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            emb = model.forward_from(x, stage)
            logits = classifier(emb.float())
            ce = nn.functional.cross_entropy(logits, y)
            cl = center(emb.float(), y)
            loss = ce + cfg.center_lambda * cl
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        center.update_centers(emb.float(), y)
        step += 1
        return {"loss": float(loss.detach()), "softmax": float(ce.detach()), "center": float(cl.detach()),
                "accuracy": float((logits.argmax(1) == y).float().mean())}

    t_start = time.perf_counter()
    images_seen = 0
    for epoch in range(start_epoch, cfg.epochs):
        order = np.random.default_rng(cfg.seed + epoch).permutation(len(labels))
        sums = {"loss": 0.0, "softmax": 0.0, "center": 0.0, "accuracy": 0.0}
        n = 0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            m = run_step(idx, epoch)
            history.steps.append({"step": step, **m})
            images_seen += len(idx)
            for k in sums:
                sums[k] += m[k]
            n += 1
            if event:
                event({"phase": "step", "epoch": epoch + 1, "epochs": cfg.epochs, "step": step, "total": total_steps,
                       **m})
            if cfg.max_steps and step >= cfg.max_steps:
                break
        ep = {"epoch": epoch + 1, **{k: v / max(1, n) for k, v in sums.items()},
              "intra_class_distance": _intra(model, feats, crops, labels, stage, norm, device, cfg.flip)}
        if lfw is not None:
            ep["lfw"] = _validate(model, lfw, lfw_feats, stage, norm, device)
        history.epochs.append(ep)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "classifier": classifier.state_dict(), "center": center.state_dict(),
                    "optimizer": opt.state_dict(), "epoch": epoch + 1, "step": step, "history": asdict(history),
                    "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "config": cfg.as_dict()},
                   ckpt_dir / f"epoch-{epoch + 1:03d}.pt")
        if event:
            event({"phase": "epoch", **ep})
        if cfg.max_steps and step >= cfg.max_steps:
            break
    seconds = time.perf_counter() - t_start

    final_lfw = history.epochs[-1].get("lfw", {}) if history.epochs else {}
    card = make_card(
        name=cfg.name, arch=cfg.arch, embedding_size=cfg.embedding_size, normalize=norm,
        source=f"trained by `idsvc train` on {cfg.data_dir}" + (f", initialised from {cfg.init}" if cfg.init else ""),
        training={"data": str(cfg.data_dir), "identities": num_classes, "images": int(len(labels)),
                  "images_without_face_skipped": int((~found).sum()), "config": cfg.as_dict(),
                  "loss": "softmax cross-entropy + lambda * center loss (Wen et al. 2016)",
                  "init_version": init_version, "device": str(device), "seconds": round(seconds, 1),
                  "images_per_second": round(images_seen / max(seconds, 1e-9), 1), "history": history.epochs},
        lfw={k: v for k, v in final_lfw.items() if k != "scores"},
        threshold=final_lfw.get("threshold_far_1e-3"),
    )
    return save_checkpoint(cfg.out, model, card, fp16=cfg.fp16)


def _forward(model: nn.Module, x: torch.Tensor, stage: str | None, device: torch.device,
             batch: int = 256) -> torch.Tensor:
    outs = []
    for i in range(0, len(x), batch):
        outs.append(model.forward_from(x[i:i + batch].to(device).float(), stage))
    return torch.cat(outs)


def _embed(model: nn.Module, feats: torch.Tensor | None, crops: np.ndarray, stage: str | None, norm: str,
           device: torch.device) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        if feats is not None:
            return nn.functional.normalize(_forward(model, feats, stage, device).float(), dim=1).cpu()
        outs = [model(preprocess(crops[i:i + 64], norm).to(device)) for i in range(0, len(crops), 64)]
        return nn.functional.normalize(torch.cat(outs).float(), dim=1).cpu()


def _intra(model: nn.Module, feats: torch.Tensor | None, crops: np.ndarray, labels: np.ndarray, stage: str | None,
           norm: str, device: torch.device, flip: bool, limit: int = 2000) -> float:
    """Mean distance of (normalised) training embeddings to their class mean, on a fixed subset."""
    idx = np.arange(min(limit, len(labels)))
    f = None if feats is None else (feats[idx, 0] if flip else feats[idx])
    emb = _embed(model, f, crops[idx], stage, norm, device).numpy()
    lab = labels[idx]
    dists = []
    for c in np.unique(lab):
        e = emb[lab == c]
        if len(e) > 1:
            dists.append(np.linalg.norm(e - e.mean(0), axis=1).mean())
    return float(np.mean(dists)) if dists else 0.0


def _validate(model: nn.Module, lfw: tuple, lfw_feats: torch.Tensor | None, stage: str | None, norm: str,
              device: torch.device) -> dict[str, Any]:
    crops, idx, same, folds = lfw
    emb = _embed(model, lfw_feats, crops, stage, norm, device).numpy()
    scores = (emb[idx[:, 0]] * emb[idx[:, 1]]).sum(1)
    rep = verification_report(scores, same, folds)
    return {"accuracy": rep["accuracy"], "accuracy_std": rep["accuracy_std"], "auc": rep["auc"], "eer": rep["eer"],
            "tar_at_far_1e-3": tar_at_far(scores, same, 1e-3), "threshold_best_accuracy": rep["threshold"],
            "threshold_far_1e-3": threshold_at_far(scores, same, 1e-3, 0.8)}
