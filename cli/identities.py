"""``idsvc identities``: list, show, rename, delete."""

from __future__ import annotations

import typer

from cli.context import out, service
from cli.output import handled
from cli.render import table

app = typer.Typer(no_args_is_help=True, help="List, show, rename and delete identities.")


@app.command("list")
@handled
def list_(ctx: typer.Context) -> None:
    """Every identity with its template count."""
    r = service(ctx).list_identities()
    o = out(ctx)
    o.emit(r)
    o.print(table(f"{len(r.identities)} identities", ("name", "templates", "created"),
                  [(i.name, i.templates, i.created_at) for i in r.identities]))


@app.command()
@handled
def show(ctx: typer.Context, name: str) -> None:
    """One identity and its templates."""
    ident = service(ctx).show_identity(name)
    o = out(ctx)
    o.emit(ident)
    o.print(table(f"{ident.name}: {ident.templates} templates", ("id", "source", "quality", "model"),
                  [(t.id, t.source_path, f"{t.quality:.3f}", t.model_version) for t in ident.template_list]))


@app.command()
@handled
def rename(ctx: typer.Context, old: str, new: str) -> None:
    """Rename an identity."""
    ident = service(ctx).rename_identity(old, new)
    out(ctx).emit(ident)
    out(ctx).print(f"renamed {old!r} to {new!r}")


@app.command()
@handled
def delete(ctx: typer.Context, name: str) -> None:
    """Delete an identity: its rows, its vectors and its stored crops."""
    r = service(ctx).delete_identity(name)
    out(ctx).emit(r)
    out(ctx).print(f"deleted {name!r} and {r.deleted_templates} templates")
