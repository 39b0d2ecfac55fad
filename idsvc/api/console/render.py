"""The console's Jinja2 templates, read from inside the package, with autoescaping on: a name is always text, never
markup."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape


@cache
def environment() -> Environment:
    folder = resources.files("idsvc.api.console") / "templates"
    env = Environment(loader=FileSystemLoader(str(folder)), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: f"{v * 100:.1f}%"
    env.filters["score"] = lambda v: "—" if v is None else f"{v:.3f}"
    env.filters["day"] = lambda v: (v or "")[:16].replace("T", " ")
    return env


def render(template: str, **ctx: Any) -> str:
    return environment().get_template(template).render(**ctx)
