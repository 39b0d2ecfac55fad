"""The CLI's one place for output and errors: ``--json`` documents, Rich tables, progress bars and exit codes.

Exit codes: 0 ok / match; 1 the answer is negative (not the same person, unknown face); 2 usage or input error;
3 internal error; 4 busy (another writer holds the lock).
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from idsvc.errors import IdsvcError

EXIT_OK, EXIT_NEGATIVE, EXIT_INPUT, EXIT_INTERNAL, EXIT_BUSY = 0, 1, 2, 3, 4
_EXIT_BY_KIND = {"input": EXIT_INPUT, "not_found": EXIT_INPUT, "conflict": EXIT_INPUT, "auth": EXIT_INPUT,
                 "busy": EXIT_BUSY, "internal": EXIT_INTERNAL}


#: Set by the app's callback on every invocation: {"out": Output, "overrides": {...}}.
STATE: dict[str, Any] = {}


class Output:
    """Where a command's result goes: one JSON document on stdout, or Rich rendering."""

    def __init__(self, as_json: bool, quiet: bool) -> None:
        self.json = as_json
        self.quiet = quiet
        self.out = Console(stderr=as_json, highlight=False, soft_wrap=True)  # tables: stderr under --json
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def emit(self, doc: Any) -> None:
        if self.json:
            sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
            sys.stdout.flush()

    def print(self, *things: Any) -> None:
        if not self.quiet and not self.json:
            self.out.print(*things)

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
        """A Rich bar on stderr; yields ``advance(n=1, total=None, description=None)``. Silent with --quiet, and when stderr is not a
        terminal (cron, pipes, tests), so logs get results rather than bar frames."""
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


def fail(out: Output | None, exc: IdsvcError) -> typer.Exit:
    """Print ``Error: <message>`` on stderr (and the error as JSON under --json); return the Exit to raise."""
    if out is not None and out.json:
        out.emit({"error": exc.to_dict()})
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"Error: {exc.message}", markup=False)
    return typer.Exit(_EXIT_BY_KIND.get(exc.kind, EXIT_INTERNAL))


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The CLI's one error mapping. Library errors → one line + documented exit code; anything unexpected → a
    one-line internal error (the traceback only with IDSVC_DEBUG=1). typer.Exit passes through untouched."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = STATE.get("out")
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, typer.BadParameter):
            raise
        except IdsvcError as exc:
            raise fail(out, exc) from None
        except Exception as exc:  # noqa: BLE001 - the one place unexpected errors become an exit code
            import os

            if os.environ.get("IDSVC_DEBUG"):
                traceback.print_exc()
            raise fail(out, IdsvcError("internal", f"internal error: {exc.__class__.__name__}: {exc}")) from None

    return wrapper
