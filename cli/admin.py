"""Operating a home: status, reindex, doctor, thresholds, ``db``, ``keys`` and ``serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.context import out, service, settings
from cli.output import handled
from cli.render import fields, table
from idsvc.errors import EXIT_NEGATIVE

db_app = typer.Typer(no_args_is_help=True, help="Database schema migrations (Alembic).")
keys_app = typer.Typer(no_args_is_help=True, help="API keys for the HTTP API (stored hashed).")


@handled
def status(ctx: typer.Context) -> None:
    """Counts, model, threshold and whether the index agrees with the registry."""
    st = service(ctx).status()
    o = out(ctx)
    o.emit(st)
    idx, m = st.index, st.model
    agreement = "in agreement with the registry" if idx.in_agreement else "; ".join(idx.problems)
    rows = [("home", st.home), ("database", f"{st.db} (schema {st.schema_})"),
            ("model", f"{m.name} {m.version} ({m.device}{', ' + m.numerics if m.numerics else ''}, {m.path})"),
            ("identities", st.identities), ("templates", st.templates),
            ("index", f"{idx.kind or 'none saved'}, {idx.vectors} vectors, {agreement}"),
            ("threshold", f"{st.threshold:.4f} ({st.threshold_source})" if st.threshold is not None else "none")]
    if st.templates_other_models:
        rows.append(("other model versions", ", ".join(f"{v}: {n}" for v, n in st.templates_other_models.items())))
    o.print(fields("idsvc status", rows))


@handled
def reindex(ctx: typer.Context,
            kind: Optional[str] = typer.Option(None, help="Index kind: flat, ivf-flat, ivf-pq, hnsw."),
            to_model: Optional[Path] = typer.Option(None, "--model", help="Re-embed every template with this "
                                                    "checkpoint, then switch the home to it (resumable).")) -> None:
    """Rebuild the index from the registry and swap it in atomically (exit 4 if another writer is running)."""
    o = out(ctx)
    svc = service(ctx, index_kind=kind)
    with o.progress("re-embedding templates") as advance:
        r = svc.reindex(model=to_model, progress=advance)
    o.emit(r)
    if r.upgrade is not None:
        u = r.upgrade
        o.print(f"re-embedded {u.re_embedded} templates ({u.resumed_from} done by an earlier run); "
                f"switched {u.templates} templates to {u.to}")
    o.print(f"reindexed {r.vectors} vectors ({r.kind}, {r.model_version}) in {r.seconds} s")


@handled
def doctor(ctx: typer.Context, fix: bool = typer.Option(False, "--fix", help="Repair from the registry.")) -> None:
    """Check the index, manifest and crops against the registry; list leftover files. Exit 0 healthy (or repaired),
    1 problems remain. An index behind the registry's last write is a note (the next search catches it up)."""
    r = service(ctx).doctor(fix=fix)
    o = out(ctx)
    o.emit(r)
    o.print(table("idsvc doctor", ("check", "problem"), [(p.check, p.problem) for p in r.problems])
            if r.problems else "no problems found")
    for n in r.notes:
        o.print(f"note: {n.problem}")
    if r.leftovers:
        o.print(table("leftovers (`idsvc doctor --fix` removes them)", ("kind", "path", "bytes"),
                      [(x.kind, x.path, str(x.bytes)) for x in r.leftovers]))
    for f in r.fixed:
        o.print(f"fixed: {f}")
    if r.remaining:
        raise typer.Exit(EXIT_NEGATIVE)


@handled
def thresholds(ctx: typer.Context) -> None:
    """Calibrated thresholds stored in the registry, per model version (newest last; the newest is used)."""
    r = service(ctx).thresholds()
    o = out(ctx)
    o.emit(r)
    o.print(table(f"{len(r.thresholds)} stored thresholds",
                  ("model version", "threshold", "mode", "pairs (gen/imp)", "data", "created"),
                  [(t.model_version, f"{t.value:.4f}", t.mode + (f" {t.target_far:g}" if t.target_far else ""),
                    f"{t.genuine_pairs}/{t.impostor_pairs}", t.data_sha256[:12], t.created_at)
                   for t in r.thresholds]))


def _migrate(ctx: typer.Context, revision: str, down: bool) -> None:
    r = service(ctx).migrate(revision, down=down)
    out(ctx).emit(r)
    out(ctx).print(f"{r.db} is at schema revision {r.revision}")


@db_app.command("upgrade")
@handled
def db_upgrade(ctx: typer.Context, revision: str = typer.Argument("head")) -> None:
    """Migrate the registry's schema up (to head by default)."""
    _migrate(ctx, revision, down=False)


@db_app.command("downgrade")
@handled
def db_downgrade(ctx: typer.Context,
                 revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Migrate the registry's schema down."""
    _migrate(ctx, revision, down=True)


@keys_app.command("create")
@handled
def keys_create(ctx: typer.Context, name: str,
                scope: str = typer.Option("read", help="read, write (includes read) or admin.")) -> None:
    """Create a key; its secret is shown once."""
    key = service(ctx).create_key(name, scope)
    o = out(ctx)
    o.emit(key)
    o.note(f"API key {name!r} ({scope}); send it as 'Authorization: Bearer <key>'. It is not shown again:")
    if not o.json:
        print(key.key)


@keys_app.command("list")
@handled
def keys_list(ctx: typer.Context) -> None:
    """Keys with their scope and status (never the secret)."""
    r = service(ctx).list_keys()
    o = out(ctx)
    o.emit(r)
    o.print(table(f"{len(r.keys)} API keys", ("name", "scope", "prefix", "created", "revoked"),
                  [(k.name, k.scope, k.prefix + "…", k.created_at, k.revoked_at) for k in r.keys]))


@keys_app.command("revoke")
@handled
def keys_revoke(ctx: typer.Context, name: str) -> None:
    """Revoke a key at once."""
    r = service(ctx).revoke_key(name)
    out(ctx).emit(r)
    out(ctx).print(f"revoked {name!r}")


@handled
def serve(ctx: typer.Context, host: str = typer.Option("127.0.0.1", help="Address to listen on."),
          port: int = typer.Option(8000, help="Port."),
          workers: int = typer.Option(1, min=1, help="Worker processes (each loads the models once)."),
          console: bool = typer.Option(True, "--console/--no-console",
                                       help="Serve the web console at /console.")) -> None:
    """Run the HTTP API (FastAPI + uvicorn) and the web console; OpenAPI docs at /docs, the console at /console."""
    from idsvc.api import serve as run_server

    s = settings(ctx)
    run_server(s.model_copy(update={"console": console}), host=host, port=port,
               workers=workers)


def register(app: typer.Typer) -> None:
    for fn in (status, reindex, doctor, thresholds, serve):
        app.command()(fn)
    app.add_typer(db_app, name="db")
    app.add_typer(keys_app, name="keys")
