"""The CLI's one place for output and errors: ``--json`` documents, Rich rendering, progress bars and exit codes.

With ``--json``, stdout carries exactly one JSON document and tables go to stderr (``--quiet`` drops them); without
it, tables go to stdout. Exit codes come from ``idsvc.errors.CODES``: 0 ok / match; 1 the answer is negative (not the
same person, unknown face); 2 usage or input error; 3 internal error; 4 busy; 5 the home, database or configuration
needs an operator.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from idsvc.errors import IdsvcError, from_os_error
from idsvc.results import Result

Advance = Callable[..., None]


class Output:
    """Where a command's result goes: one JSON document on stdout, or Rich rendering."""

    def __init__(self, as_json: bool, quiet: bool) -> None:
        self.json = as_json
        self.quiet = quiet
        self.out = Console(stderr=as_json, highlight=False, soft_wrap=True)  # tables: stderr under --json
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def emit(self, doc: Result | dict[str, Any]) -> None:
        """With --json, the command's one document on stdout."""
        if self.json:
            write_json(doc, indent=2)

    def line(self, item: Result) -> None:
        """One JSON line on stdout as an item finishes (--jsonl), whatever --json says."""
        write_json(item, indent=None)

    def print(self, *things: Any, stderr: bool = False) -> None:
        """Tables and notes for people: stdout, or stderr under --json (and wherever ``stderr`` asks, e.g. when
        stdout carries JSON lines)."""
        if not self.quiet:
            (self.err if stderr else self.out).print(*things)

    def note(self, message: str) -> None:
        """A progress line on stderr (never stdout), unless --quiet."""
        if not self.quiet:
            self.err.print(message, markup=False)

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[Advance]:
        """A Rich bar on stderr; yields ``advance(n=1, total=None, description=None)``. Silent with --quiet, and when
        stderr is not a terminal (cron, pipes, tests), so logs get results rather than bar frames."""
        if self.quiet or not self.err.is_terminal:
            yield lambda n=1, total=None, description=None: None
            return
        columns = [TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.err, transient=True) as bar:
            task = bar.add_task(description, total=total)

            def advance(n: int = 1, total: int | None = None, description: str | None = None) -> None:
                if total is not None:
                    bar.update(task, total=total)
                if description is not None:
                    bar.update(task, description=description)
                if n:
                    bar.advance(task, n)

            yield advance


def write_json(doc: Result | dict[str, Any], *, indent: int | None) -> None:
    """The CLI's one JSON writer: a result as its document (``Result.document``: the fields it was given), strict
    JSON (no NaN), then flushed so a pipe sees each line as it is written."""
    body = doc.document() if isinstance(doc, Result) else doc
    sys.stdout.write(json.dumps(body, indent=indent, allow_nan=False) + "\n")
    sys.stdout.flush()


def error_line(exc: IdsvcError) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"Error: {exc.message}", markup=False)


def warning_line(message: str) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"Warning: {message}", markup=False)


def fail(out: Output | None, exc: IdsvcError, *, emit: bool = True) -> typer.Exit:
    """Print ``Error: <message>`` on stderr (and, under --json with ``emit``, the error as the JSON document);
    return the Exit to raise, with the code's exit status from the one table."""
    if out is not None and out.json and emit:
        out.emit({"error": exc.to_dict()})
    error_line(exc)
    return typer.Exit(exc.exit_code)


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The CLI's one error mapping. Library errors → one line + their exit code; anything unexpected → a one-line
    internal error, exit 3 (the traceback only with IDSVC_DEBUG=1). typer.Exit passes through untouched."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")  # every command takes ``ctx: typer.Context``
        out = getattr(ctx.find_root().obj, "out", None) if ctx is not None else None
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter, KeyboardInterrupt):
            raise
        except IdsvcError as exc:
            raise fail(out, exc) from None
        except Exception as exc:
            if (as_input := from_os_error(exc)) is not None:
                raise fail(out, as_input) from None
            logging.getLogger("idsvc").debug("internal error", exc_info=True)
            if os.environ.get("IDSVC_DEBUG"):
                traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0]  # one line, whatever the exception says
            raise fail(out, IdsvcError("internal", f"internal error: {exc.__class__.__name__}: {first}")) from None

    return wrapper
