"""``detect`` (faces, landmarks and quality, no encoder) and ``embed`` (each photo's vector, for use elsewhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.context import out, service
from cli.output import fail, handled
from cli.render import table
from idsvc.errors import IdsvcError


@handled
def detect(ctx: typer.Context,
           paths: list[str] = typer.Argument(..., help="Photos, folders or globs."),
           crops: Optional[Path] = typer.Option(None, "--crops", help="Write each face's aligned crop here as "
                                                "<photo>-<n>.png (n = 1 for the main face).")) -> None:
    """Find every face: box, five landmarks, detection probability, quality and what the enroll gate would say.
    Loads no encoder. Exit 0 when every photo was read, 2 when any could not be."""
    o = out(ctx)
    with o.progress("detecting") as advance:
        r = service(ctx).detect(paths, crops_dir=crops, progress=advance)
    o.emit(r)
    o.print(table(f"{r.faces} faces in {len(r.photos)} photos", ("photo", "face", "box", "det_prob", "quality",
                                                                 "problems"),
                  [(p.path, str(n), str(f.box), f"{f.det_prob:.3f}", f"{f.quality.score:.3f}",
                    "; ".join(f.quality_problems)) for p in r.photos for n, f in enumerate(p.faces or [], 1)]
                  + [(p.path, "-", p.error.message, "", "", "") for p in r.photos if p.error is not None]))
    first = next((p.error for p in r.photos if p.error is not None), None)
    if first is not None:
        raise fail(o, IdsvcError(first.code, f"{r.errors} photos could not be read (first: {first.message})"),
                   emit=False)


@handled
def embed(ctx: typer.Context,
          paths: list[str] = typer.Argument(..., help="Photos, folders or globs."),
          out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Write (N, D) float32 rows to this .npy "
                                                  "and photo → row, errors and model version to <file>.json."),
          jsonl: bool = typer.Option(False, "--jsonl", help="Print one JSON line per photo as it finishes instead."),
          aligned: bool = typer.Option(False, "--aligned", help="The photos are already aligned face crops.")) -> None:
    """Each photo's main-face embedding (the vector search uses), with the model version that made it.
    Exit 0 when every photo gave a vector, 2 when any did not."""
    o = out(ctx)
    if (out_path is None) == (not jsonl):
        raise IdsvcError("invalid_argument", "give exactly one of --out FILE.npy and --jsonl")
    svc = service(ctx)
    if out_path is None:
        stream = svc.embed(paths, aligned=aligned)
        errors = 0
        for record in stream:
            o.line(record)
            errors += record.failed is not None
        if errors:
            raise fail(o, IdsvcError("no_face", f"{errors} of {stream.total} photos gave no embedding"), emit=False)
        return
    with o.progress("embedding") as advance:
        r = svc.embed(paths, aligned=aligned, out=out_path, progress=advance)
    o.emit(r)
    o.print(f"wrote {r.rows} × {r.dim} embeddings ({r.model_version}) to {r.path}, index in {r.sidecar}")
    if r.errors:
        first = r.errors[0]
        error = first.error or {}
        raise fail(o, IdsvcError(str(error.get("code", "no_face")), f"{len(r.errors)} of {r.rows + len(r.errors)} "
                                 f"photos gave no embedding (first: {first.path}: {error.get('message')})"),
                   emit=False)


def register(app: typer.Typer) -> None:
    app.command()(detect)
    app.command()(embed)
