"""The one table renderer: every command's table is a title, columns and rows (or field/value pairs)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.table import Table


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def fields(title: str, pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column field/value table without a header (status, model info, eval)."""
    t = Table(title=title, show_header=False)
    t.add_column("field")
    t.add_column("value")
    for k, v in pairs:
        t.add_row(k, "" if v is None else str(v))
    return t
