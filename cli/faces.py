"""enroll, search, verify: the face commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from cli.context import out, service
from cli.output import Output, fail, handled, warning_line
from cli.render import table
from idsvc.errors import EXIT_NEGATIVE, MACHINE_FAILURES, IdsvcError
from idsvc.results import BatchSummary, Each, EnrollResult, Item, Rejected


@handled
def enroll(ctx: typer.Context,
           args: Optional[list[str]] = typer.Argument(None, metavar="NAME PATH...", help="Identity name (created if "
                                                      "new), then image files, folders or globs."),
           each: Optional[Path] = typer.Option(None, "--each", help="Enroll one identity per sub-folder of this "
                                               "folder, named after it (known/<name>/*.jpg)."),
           recursive: bool = typer.Option(False, "--recursive", help="A folder whose photos sit in several "
                                          "sub-folders is one person (refused without this)."),
           aligned: bool = typer.Option(False, "--aligned", help="The photos are already aligned face crops "
                                        "(ID photos, exports of other face systems): use each whole photo.")) -> None:
    """Enroll face images into an identity (`enroll NAME PATH...`), or one identity per sub-folder
    (`enroll --each DIR`). Already-enrolled images (same sha256) are skipped.
    Exit 0 when every image was stored or already known, 2 when any was rejected (the others are stored)."""
    o = out(ctx)
    svc = service(ctx)
    if each is not None:
        if args:
            raise IdsvcError("invalid_argument", "give either NAME PATH... or --each DIR, not both")
        return _enroll_each(ctx, each, aligned)
    if not args or len(args) < 2:
        raise IdsvcError("invalid_argument", "give an identity name and at least one image (or --each DIR)")
    name, paths = args[0], args[1:]
    with o.progress(f"enrolling {name}") as advance:
        r = svc.enroll(name, paths, progress=advance, aligned=aligned, recursive=recursive)
    o.emit(r)
    rows = ([(a.path, "[green]accepted", f"template {a.template_id}, quality {a.quality.score}")
             for a in r.accepted] + [(s.path, "[yellow]skipped", s.reason) for s in r.skipped]
            + [(x.path, "[red]rejected", x.reason) for x in r.rejected])
    o.print(table(f"enroll {name}: {len(r.accepted)} accepted, {len(r.rejected)} rejected, "
                  f"{len(r.skipped)} skipped", ("image", "result", "detail"), rows))
    _index_behind(o, [r])
    if r.rejected:
        first = _stopped(r.rejected) or r.rejected[0]
        total = len(r.rejected) + len(r.accepted) + len(r.skipped)
        only = len(r.rejected) == 1 and not r.accepted
        msg = first.reason if only else f"{len(r.rejected)} of {total} images rejected (first: {first.reason})"
        code = first.code if not r.accepted or first.code in MACHINE_FAILURES else "invalid_argument"
        raise fail(o, IdsvcError(code, msg), emit=False)


def _stopped(rejected: list[Rejected]) -> Rejected | None:
    """The rejection that stopped an enroll (a full disk, a lost database): its code, not the photos', is the exit
    status, and the JSON answer still lists every template that was stored before it."""
    return next((x for x in rejected if x.code in MACHINE_FAILURES), None)


def _index_behind(o: Output, results: list[EnrollResult]) -> None:
    if any(r.index_behind for r in results):
        warning_line("templates stored; the vector index could not be saved and catches up on the next search")


def _enroll_each(ctx: typer.Context, folder: Path, aligned: bool) -> None:
    o = out(ctx)
    with o.progress(f"enrolling {folder}") as advance:
        r = service(ctx).enroll_each([folder], progress=advance, aligned=aligned)
    o.emit(r)
    o.print(table(f"enroll --each {folder}: {len(r.identities)} identities, {r.accepted} accepted, "
                  f"{r.rejected} rejected, {r.skipped} skipped",
                  ("identity", "accepted", "rejected", "skipped", "first problem"),
                  [(i.identity, len(i.accepted), len(i.rejected), len(i.skipped),
                    i.rejected[0].reason if i.rejected else "") for i in r.identities]))
    _index_behind(o, r.identities)
    stopped = _stopped([x for i in r.identities for x in i.rejected])
    if stopped is not None:
        raise fail(o, IdsvcError(stopped.code, f"{r.accepted} images stored, then {stopped.reason}"), emit=False)
    if r.rejected:
        raise fail(o, IdsvcError("invalid_argument", f"{r.rejected} images rejected (the table or the JSON "
                                 "says which)"), emit=False)


@handled
def search(ctx: typer.Context, images: list[str] = typer.Argument(..., help="Photos, folders or globs."),
           top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Identities to list."),
           threshold: Optional[float] = typer.Option(None, help="Match threshold (cosine score in [-1, 1]) for "
                                                     "this search."),
           all_faces: bool = typer.Option(False, "--all-faces", help="Report every face in the photo."),
           jsonl: bool = typer.Option(False, "--jsonl", help="One JSON line per photo as it finishes (for pipes)."),
           aligned: bool = typer.Option(False, "--aligned", help="The photos are already aligned face crops "
                                        "(ID photos, exports of other face systems): use each whole photo.")) -> None:
    """Who is this? One photo: exit 0 when the best identity scores at or above the threshold, 1 when unknown.
    Several photos (files, folders, globs; the model loads once): one result each (--json: {"results": [...],
    "summary": {...}}; --jsonl: a line per photo); exit 0 when every photo was identified, 1 when any was unknown,
    2 when any could not be read."""
    o = out(ctx)
    results = service(ctx).search(images, top_k=top_k, threshold=threshold, all_faces=all_faces, aligned=aligned)
    if len(images) > 1 or jsonl or not Path(images[0]).is_file():
        return _batch(o, results, jsonl, "search", _search_row)
    r = results.one().result()
    o.emit(r)
    for i, face in enumerate(r.faces):
        o.print(table(f"face {i + 1} {face.box}: {face.identity or 'unknown'} (threshold "
                      f"{r.threshold:.3f}, {r.threshold_source})", ("rank", "identity", "score", "match"),
                      [(rank, c.name, f"{c.score:.4f}", "yes" if c.match else "no")
                       for rank, c in enumerate(face.candidates, 1)]))
    if all(f.identity is None for f in r.faces):
        raise typer.Exit(EXIT_NEGATIVE)


@handled
def verify(ctx: typer.Context, a: Optional[str] = typer.Argument(None, help="First photo."),
           b: Optional[str] = typer.Argument(None, help="Second photo (or use --identity)."),
           identity: Optional[str] = typer.Option(None, "--identity", "-i", help="Compare with an enrolled identity."),
           pairs: Optional[Path] = typer.Option(None, "--pairs", help="Verify every pair in this file: two photo "
                                                "paths per line (tab-separated, or whitespace)."),
           jsonl: bool = typer.Option(False, "--jsonl", help="With --pairs: one JSON line per pair as it finishes."),
           threshold: Optional[float] = typer.Option(None, help="Match threshold (cosine score in [-1, 1])."),
           aligned: bool = typer.Option(False, "--aligned", help="The photos are already aligned face crops "
                                        "(ID photos, exports of other face systems): use each whole photo.")) -> None:
    """Same person? Exit 0 = same, 1 = not the same, 2 = usage or input error. With --pairs FILE: one result per
    line; exit 0 when every pair is the same person, 1 when any is not, 2 when any photo could not be read."""
    o = out(ctx)
    if pairs is not None:
        if a or b or identity:
            raise IdsvcError("invalid_argument", "give either --pairs FILE or photos, not both")
        return _batch(o, service(ctx).verify(pairs, threshold=threshold, aligned=aligned), jsonl, "verify",
                      _verify_row)
    if a is None or (b is None) == (identity is None):
        raise IdsvcError("invalid_argument", "give two photos, a photo and --identity NAME, or --pairs FILE")
    svc = service(ctx)
    r = (svc.verify([(a, b)], threshold=threshold, aligned=aligned).one().result() if b
         else svc.verify_identity(a, str(identity), threshold=threshold, aligned=aligned))
    o.emit(r)
    verdict = "[green]same person" if r.same else "[red]not the same person"
    o.print(f"{verdict}[/]: score {r.score:.4f}, threshold {r.threshold:.4f} ({r.threshold_source})")
    if not r.same:
        raise typer.Exit(EXIT_NEGATIVE)


def _search_row(item: Any) -> tuple[str, str, str]:
    r = item.result()
    best = max((f.candidates[0].score for f in r.faces if f.candidates), default=None)
    return (item.label, ", ".join(f.identity or "unknown" for f in r.faces), "" if best is None else f"{best:.4f}")


def _verify_row(item: Any) -> tuple[str, str, str]:
    r = item.result()
    return item.label, "same" if r.same else "not the same", f"{r.score:.4f}"


def _batch(o: Output, results: Each, jsonl: bool, what: str, row: Callable[[Any], tuple[str, str, str]]) -> None:
    """Render a batch: JSON lines as results arrive, or one document and a table; exit with the summary's code."""
    done: list[Item] = []
    with o.progress(what, total=results.total) as advance:
        for r in results:
            done.append(r)
            if jsonl:
                o.line(r)
            advance(1)
    s = BatchSummary.of(done)
    if not jsonl:
        o.emit({"results": [r.document() for r in done], "summary": s.document()})
    o.print(table(f"{what}: {s.positive} positive, {s.negative} negative, {s.errors} errors of {results.total}",
                  ("input", "answer", "score"),
                  [row(r) if r.failed is None else (r.label, "[red]error", r.failed.message) for r in done]),
            stderr=jsonl)
    if s.exit_code:
        raise typer.Exit(s.exit_code)


def register(app: typer.Typer) -> None:
    for fn in (enroll, search, verify):
        app.command()(fn)
