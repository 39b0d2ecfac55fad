"""CLI state, kept in Typer's context object (``ctx.obj``) rather than a module global: the output mode, the global
flags as settings overrides, and the one Service a command uses."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.logging import RichHandler

from cli.output import Output
from idsvc.service import Service
from idsvc.settings import Settings, load_settings


@dataclass
class CliState:
    out: Output
    overrides: dict[str, Any] = field(default_factory=dict)
    verbose: int = 0


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):  # only when a command is invoked without the app's callback
        obj = ctx.find_root().obj = CliState(Output(False, False))
    return obj


def settings(ctx: typer.Context, **extra: Any) -> Settings:
    """Settings from the global flags (and ``extra`` command flags), ``IDSVC_*`` and defaults; logging set up."""
    st = state(ctx)
    s = load_settings(**st.overrides, **extra)
    level = {0: s.log_level, 1: "INFO"}.get(st.verbose, "DEBUG")
    root = logging.getLogger("idsvc")
    if not root.handlers:
        root.addHandler(RichHandler(console=st.out.err, show_path=False, show_time=False, markup=False))
    root.setLevel(level)
    return s


def service(ctx: typer.Context, **extra: Any) -> Service:
    return Service(settings(ctx, **extra))


def out(ctx: typer.Context) -> Output:
    return state(ctx).out
