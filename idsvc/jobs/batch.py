"""Many searches or verifications in one process (the model loads once): one result per photo or pair, in order,
an input error reported in its item rather than stopping the rest, and one exit code that summarises them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from idsvc.errors import EXIT_INPUT, EXIT_NEGATIVE, IdsvcError


def each(items: list[Any], run: Callable[[Any], dict[str, Any]], key: Callable[[Any], dict[str, Any]],
         ) -> Iterator[dict[str, Any]]:
    """``key(item) | run(item)`` per item, or ``key(item) | {"error": …}`` when it raises an IdsvcError."""
    for item in items:
        try:
            yield key(item) | run(item)
        except IdsvcError as exc:
            yield key(item) | {"error": {"code": exc.code, "message": exc.message}}


def read_pairs_file(path: Path) -> list[tuple[str, str]]:
    """Two photo paths per line, separated by a tab (or, when there is no tab, by whitespace); blank lines and
    lines starting with # are skipped. Raises ``file_not_found`` and ``invalid_argument`` (naming the line)."""
    if not path.is_file():
        raise IdsvcError("file_not_found", f"{path}: no such file", path=str(path))
    pairs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 2:
            raise IdsvcError("invalid_argument", f"{path}:{n}: expected two photo paths, found {len(parts)}")
        pairs.append((parts[0].strip(), parts[1].strip()))
    if not pairs:
        raise IdsvcError("invalid_argument", f"{path}: no pairs in it")
    missing = [p for pair in pairs for p in pair if not Path(p).is_file()]
    if missing:
        raise IdsvcError("file_not_found", f"{missing[0]}: no such file (named in {path})", path=missing[0])
    return pairs


def summary(results: list[dict[str, Any]], positive: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Counts and the exit code: 2 when any item had an input error, else 1 when any answer was negative (unknown
    face, not the same person), else 0."""
    errors = sum(1 for r in results if "error" in r)
    negative = sum(1 for r in results if "error" not in r and not positive(r))
    code = EXIT_INPUT if errors else EXIT_NEGATIVE if negative else 0
    return {"items": len(results), "positive": len(results) - errors - negative, "negative": negative,
            "errors": errors, "exit_code": code}


def identified(result: dict[str, Any]) -> bool:
    """A search result's answer is positive when any of its faces is a known identity."""
    return any(f["identity"] for f in result["faces"])
