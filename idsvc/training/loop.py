"""The training loop: softmax + λ·center loss, cosine learning rate, per-epoch validation and checkpoint, CUDA mixed
precision when there is a GPU, and the final checkpoint with its model card."""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from idsvc.devices import resolve_device
from idsvc.encoders import nets
from idsvc.encoders.checkpoint import make_card, model_version, read_checkpoint, save_checkpoint
from idsvc.encoders.torch_encoder import normalise
from idsvc.errors import IdsvcError
from idsvc.measurement.pairs import read_pairs
from idsvc.settings import Settings
from idsvc.training import checkpoint, prefix
from idsvc.training.center_loss import CenterLoss
from idsvc.training.config import TrainConfig
from idsvc.training.data import Event, augment, cache_key, cached_crops, list_identities
from idsvc.training.softmax_loss import SoftmaxLoss
from idsvc.training.validation import LfwData, intra_class_distance, validate_lfw
from idsvc.training.weighted_sum import WeightedSum


@dataclass
class History:
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Run:
    """Everything one run holds; built by ``_prepare``, advanced by ``_step``."""
    cfg: TrainConfig
    device: torch.device
    model: Any
    norm: str
    init_version: str | None
    crops: np.ndarray
    pixels: torch.Tensor  # the crops on ``device`` (on the CPU the same memory): batches are cut and augmented there
    labels: np.ndarray
    faceless: int
    names: list[str]
    feats: torch.Tensor | None
    lfw: LfwData | None
    lfw_feats: torch.Tensor | None
    loss: WeightedSum
    opt: torch.optim.Optimizer
    gen: torch.Generator
    history: History = field(default_factory=History)
    step: int = 0
    start_epoch: int = 0

    @property
    def amp(self) -> bool:
        return self.device.type == "cuda"

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.labels) / self.cfg.batch_size))


def train(cfg: TrainConfig, settings: Settings, event: Event | None = None) -> dict[str, Any]:
    """Train, validate, checkpoint every epoch, and write the final checkpoint with its model card."""
    cfg.check()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    run = _prepare(cfg, settings, event)
    base_lrs = [g["lr"] for g in run.opt.param_groups]
    scaler = torch.amp.GradScaler("cuda", enabled=run.amp)
    t0, images_seen = time.perf_counter(), 0
    for epoch in range(run.start_epoch, cfg.epochs):
        order = np.random.default_rng(cfg.seed + epoch).permutation(len(run.labels))
        sums = {"loss": 0.0, "softmax": 0.0, "center": 0.0, "accuracy": 0.0}
        n = 0
        for b in range(run.steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            m = _step(run, idx, epoch, base_lrs, scaler)
            run.history.steps.append({"step": run.step, **m})
            images_seen += len(idx)
            n += 1
            for k in sums:
                sums[k] += m[k]
            if event:
                event({"phase": "step", "epoch": epoch + 1, "epochs": cfg.epochs, "step": run.step,
                       "total": run.steps_per_epoch * cfg.epochs, **m})
            if cfg.max_steps and run.step >= cfg.max_steps:
                break
        _end_epoch(run, epoch, {k: v / max(1, n) for k, v in sums.items()}, event)
        if cfg.max_steps and run.step >= cfg.max_steps:
            break
    return _finish(run, time.perf_counter() - t0, images_seen)


def _build_model(cfg: TrainConfig, device: torch.device) -> tuple[nets.StagedNet, str, str | None]:
    """(model on ``device``, input normalisation, the init checkpoint's version). Raises ``model_invalid``."""
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
    return model.to(device), norm, init_version


def _load_lfw(cfg: TrainConfig, pipeline: Any, settings: Settings, event: Event | None) -> LfwData | None:
    if cfg.lfw_dir is None:
        return None
    pairs = read_pairs(cfg.lfw_dir / "pairs.txt", cfg.lfw_dir / "images")
    photos = sorted({p for pr in pairs for p in (pr.a, pr.b)})
    crops, _ = cached_crops(pipeline, photos, settings.cache_dir, event, "lfw")
    where = {p: i for i, p in enumerate(photos)}
    return (crops, np.array([[where[p.a], where[p.b]] for p in pairs]), np.array([p.same for p in pairs]),
            np.array([p.fold for p in pairs]))


def _prepare(cfg: TrainConfig, settings: Settings, event: Event | None) -> Run:
    from idsvc.home.pipeline import Pipeline

    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every batch has one shape: let cuDNN pick its fastest kernels once
    model, norm, init_version = _build_model(cfg, device)
    files, labels, names = list_identities(cfg.data_dir, cfg.min_per_identity, cfg.max_identities,
                                           cfg.max_per_identity)
    pipeline = Pipeline(settings, crop_size=nets.INPUT_SIZE[cfg.arch])
    crops, found = cached_crops(pipeline, files, settings.cache_dir, event, "train")
    crops, labels = crops[found], labels[found]  # photos with no detected face teach the wrong thing
    lfw = _load_lfw(cfg, pipeline, settings, event)
    feats = lfw_feats = None
    stage = cfg.freeze_through
    if stage is not None:
        prefix.freeze_through(model, stage)
        base = init_version or f"seed{cfg.seed}"
        feats = _prefix_cache(settings, event, model, crops, norm, device, stage, cfg.flip, "train",
                              f"prefix-{cache_key(base, stage, len(crops), cfg.flip, crops[:4].sum())}.pt")
        if lfw is not None:
            lfw_feats = _prefix_cache(settings, event, model, lfw[0], norm, device, stage, False, "lfw",
                                      f"prefix-lfw-{cache_key(base, stage, 'lfw', len(lfw[0]))}.pt")
    loss = WeightedSum({"softmax": (1.0, SoftmaxLoss(cfg.embedding_size, len(names))),
                        "center": (cfg.center_lambda, CenterLoss(len(names), cfg.embedding_size, cfg.center_alpha))})
    loss.to(device)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad],
               "lr": cfg.lr_backbone if cfg.init else cfg.lr},
              {"params": list(loss.parameters()), "lr": cfg.lr}]
    opt: torch.optim.Optimizer
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    pixels = torch.from_numpy(crops).to(device)  # uint8: 12,000 160-px crops are 0.9 GB, at home on any GPU
    run = Run(cfg, device, model, norm, init_version, crops, pixels, labels, int((~found).sum()), names, feats, lfw,
              lfw_feats, loss, opt, torch.Generator(device=device).manual_seed(cfg.seed))
    _start(run, event)
    return run


def _prefix_cache(settings: Settings, event: Event | None, model: Any, crops: np.ndarray, norm: str,
                  device: torch.device, stage: str, flip: bool, what: str, name: str) -> torch.Tensor:
    """Frozen-stage output of ``crops`` (with mirrors when ``flip``), cached under ``HOME/cache/train``."""

    def make() -> torch.Tensor:
        if event:
            event({"phase": "prefix", "what": what, "total": len(crops)})
        return prefix.compute(model, crops, stage, norm, device, flip)

    return prefix.cached(settings.cache_dir / "train" / name, make)


def _start(run: Run, event: Event | None) -> None:
    """Resume from the last epoch checkpoint, or (fine-tuning) start each centre at its class mean."""
    cfg = run.cfg
    if cfg.resume:
        st, path = checkpoint.load_latest(cfg)
        run.model.load_state_dict(st["model"])
        run.loss.load_state_dict(st["loss"])
        run.opt.load_state_dict(st["optimizer"])
        run.start_epoch, run.step = st["epoch"], st["step"]
        run.history = History(**st["history"])
        if st["gen"].numel() == run.gen.get_state().numel():
            run.gen.set_state(st["gen"])
        else:  # resumed on another kind of device, whose generator keeps another state: go on from a fresh seed
            run.gen.manual_seed(cfg.seed + run.step)
        torch.set_rng_state(st["torch_rng"])
        if event:
            event({"phase": "resume", "epoch": run.start_epoch, "step": run.step, "from": str(path)})
    elif cfg.init is not None and run.feats is not None:
        with torch.no_grad():
            run.model.eval()
            f0 = prefix.forward_from(run.model, run.feats[:, 0] if cfg.flip else run.feats, cfg.freeze_through,
                                     run.device)
            center: CenterLoss = run.loss.terms["center"]  # type: ignore[assignment]
            center.init_centers(f0, torch.from_numpy(run.labels).to(run.device))


def _batch(run: Run, idx: np.ndarray) -> torch.Tensor:
    """The network's input for a batch: cached prefix features (a random one of each crop and its mirror), or
    augmented, normalised crops."""
    cfg = run.cfg
    if run.feats is not None:
        f = run.feats[torch.from_numpy(idx)]
        if cfg.flip:
            pick = (torch.rand(len(idx), generator=run.gen, device=run.gen.device) < 0.5).long().to(f.device)
            f = f[torch.arange(len(idx)), pick]
        return f.to(run.device).float()
    rows = torch.from_numpy(idx).to(run.device)
    raw = augment(run.pixels[rows].permute(0, 3, 1, 2).float(), cfg.flip, run.gen)
    return normalise(raw.round(), run.norm)


def _step(run: Run, idx: np.ndarray, epoch: int, base_lrs: list[float], scaler: Any) -> dict[str, float]:
    cfg = run.cfg
    y = torch.from_numpy(run.labels[idx]).to(run.device)
    x = _batch(run, idx)
    frac = run.step / max(1, run.steps_per_epoch * cfg.epochs)
    for g, lr in zip(run.opt.param_groups, base_lrs):
        g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * frac))
    if cfg.init is not None and epoch < cfg.warmup_epochs:
        run.opt.param_groups[0]["lr"] = 0.0  # warm-up: only the classifier learns
    run.model.train()
    with torch.autocast("cuda", dtype=torch.float16, enabled=run.amp):
        emb = run.model.forward_from(x, cfg.freeze_through)
        total, parts = run.loss(emb, y)
    run.opt.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.step(run.opt)
    scaler.update()
    center: CenterLoss = run.loss.terms["center"]  # type: ignore[assignment]
    center.update_centers(emb.float(), y)
    run.step += 1
    softmax: SoftmaxLoss = run.loss.terms["softmax"]  # type: ignore[assignment]
    logits = softmax.last_logits
    accuracy = float((logits.argmax(1) == y).float().mean()) if logits is not None else 0.0
    return {"loss": float(total.detach()), "softmax": float(parts["softmax"].detach()),
            "center": float(parts["center"].detach()), "accuracy": accuracy}


def _end_epoch(run: Run, epoch: int, means: dict[str, float], event: Event | None) -> None:
    cfg = run.cfg
    ep: dict[str, Any] = {"epoch": epoch + 1, **means, "intra_class_distance": intra_class_distance(
        run.model, run.feats, run.crops, run.labels, cfg.freeze_through, run.norm, run.device, cfg.flip)}
    if run.lfw is not None:
        ep["lfw"] = validate_lfw(run.model, run.lfw, run.lfw_feats, cfg.freeze_through, run.norm, run.device)
    run.history.epochs.append(ep)
    checkpoint.save_epoch(cfg, epoch + 1, {
        "model": run.model.state_dict(), "loss": run.loss.state_dict(), "optimizer": run.opt.state_dict(),
        "step": run.step, "history": asdict(run.history), "gen": run.gen.get_state(),
        "torch_rng": torch.get_rng_state()})
    if event:
        event({"phase": "epoch", **ep})


def _finish(run: Run, seconds: float, images_seen: int) -> dict[str, Any]:
    cfg = run.cfg
    final_lfw = run.history.epochs[-1].get("lfw", {}) if run.history.epochs else {}
    card = make_card(
        name=cfg.name, arch=cfg.arch, embedding_size=cfg.embedding_size, normalize=run.norm,
        source=f"trained by `idsvc train` on {cfg.data_dir}" + (f", initialised from {cfg.init}" if cfg.init else ""),
        training={"data": str(cfg.data_dir), "identities": len(run.names), "images": len(run.labels),
                  "images_without_face_skipped": run.faceless, "config": cfg.as_dict(),
                  "loss": "softmax cross-entropy + lambda * center loss (Wen et al. 2016)",
                  "init_version": run.init_version, "device": str(run.device), "seconds": round(seconds, 1),
                  "images_per_second": round(images_seen / max(seconds, 1e-9), 1), "history": run.history.epochs},
        lfw={k: v for k, v in final_lfw.items() if k != "scores"},
        threshold=final_lfw.get("threshold_far_1e-3"),
    )
    return save_checkpoint(cfg.out, run.model, card, fp16=cfg.fp16)

