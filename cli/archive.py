"""``export`` and ``import``: a home's gallery in one portable archive (backups, moving to another machine)."""

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
    out(ctx).print(f"wrote {r['path']}: {r['identities']} identities, {r['templates']} templates, {r['crops']} crops, "
                   f"{r['thresholds']} thresholds (models: {', '.join(r['model_versions']) or 'none'})")


@handled
def import_(ctx: typer.Context, archive: Path = typer.Argument(..., help="An archive written by `idsvc export`."),
            reembed: bool = typer.Option(False, "--reembed", help="Re-embed templates of another model version from "
                                         "their crops (refused without this).")) -> None:
    """Add an archive's gallery to this home in one transaction (an interrupted import changes nothing)."""
    r = service(ctx).import_archive(archive, reembed=reembed)
    out(ctx).emit(r)
    out(ctx).print(f"imported {r['identities']} identities, {r['templates']} templates ({r['re_embedded']} "
                   f"re-embedded for {r['model_version']}), {r['thresholds']} thresholds")


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command("import")(import_)
