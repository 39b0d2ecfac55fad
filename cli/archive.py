"""``export`` and ``import``: a home's gallery in one portable archive (backups, moving to another machine);
``migrate``: the home copied to other backends (PostgreSQL + Milvus)."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.context import out, service
from cli.output import handled


@handled
def export(ctx: typer.Context, archive: Path = typer.Argument(..., help="Zip file to write.")) -> None:
    """Write identities, templates, crops and calibrated thresholds to one archive with a manifest and checksums."""
    r = service(ctx).export(archive)
    out(ctx).emit(r)
    out(ctx).print(f"wrote {r.path}: {r.identities} identities, {r.templates} templates, {r.crops} crops, "
                   f"{r.thresholds} thresholds (models: {', '.join(r.model_versions) or 'none'})")


@handled
def import_(ctx: typer.Context, archive: Path = typer.Argument(..., help="An archive written by `idsvc export`."),
            reembed: bool = typer.Option(False, "--reembed", help="Re-embed templates of another model version from "
                                         "their crops (refused without this).")) -> None:
    """Add an archive's gallery to this home in one transaction (an interrupted import changes nothing)."""
    r = service(ctx).import_archive(archive, reembed=reembed)
    out(ctx).emit(r)
    out(ctx).print(f"imported {r.identities} identities, {r.templates} templates ({r.re_embedded} "
                   f"re-embedded for {r.model_version}), {r.thresholds} thresholds")


@handled
def migrate(ctx: typer.Context,
            to_db: str = typer.Option(..., "--to-db", help="The target registry: a SQLAlchemy URL, e.g. "
                                      "postgresql+psycopg://user@host/idsvc."),
            to_vectors: str = typer.Option("faiss", "--to-vectors", help="The target vector store: faiss, "
                                           "milvus:///path/file.db (Milvus Lite) or http://host:19530."),
            to_home: Path | None = typer.Option(None, "--to-home", help="Copy the crops into this home folder "
                                                "(default: the target rows point at this home's crop files)."),
            batch: int = typer.Option(200, min=1, help="Templates per target transaction.")) -> None:
    """Copy this home (identities, templates, thresholds, API keys, crops) to other backends. Resumable: run it
    again after an interruption; the source is only read."""
    o = out(ctx)
    with o.progress("migrate") as advance:
        r = service(ctx).copy_home(to_db, to_vectors, to_home=to_home, batch=batch, progress=advance)
    o.emit(r)
    o.print(f"migrated to {r.to_db} + {r.to_vectors}: {r.identities} identities, {r.templates} templates "
            f"({r.copied_now} copied now), {r.vectors} vectors; crops {r.crops}")


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command("import")(import_)
    app.command()(migrate)
