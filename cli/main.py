"""``idsvc``: the command line. Each command parses its arguments, calls one ``Service`` method and renders the
result; the commands live in ``faces`` (enroll, search, verify), ``identities``, ``admin`` (status, reindex,
doctor, thresholds, db, keys, serve) and ``models`` (model, eval, calibrate, train)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from cli import admin, archive, extract, faces, identities, models
from cli.context import CliState
from cli.output import Output

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="idsvc: a self-hosted face identity service. Exit codes: 0 ok/match, 1 no match or not the "
                       "same person, 2 usage or input error, 3 internal error, 4 busy, 5 the home, database or "
                       "configuration needs fixing.")


def _version(value: bool) -> None:
    """``--version``: read from package metadata and the model card's JSON, so it imports neither torch nor faiss."""
    if not value:
        return
    import json
    from importlib.metadata import PackageNotFoundError, version

    from idsvc.settings import DEFAULT_MODEL

    def installed(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    card = DEFAULT_MODEL.with_name(DEFAULT_MODEL.name + ".card.json")
    model = json.loads(card.read_text()).get("version", "?") if card.is_file() else "missing"
    typer.echo(f"idsvc {installed('idsvc')}\nmodel {model} (shipped default)\ntorch {installed('torch')}\n"
               f"faiss {installed('faiss-cpu')}")
    raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    home: Optional[Path] = typer.Option(None, help="Data directory [env IDSVC_HOME; default: per-user data dir]."),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the registry [env IDSVC_DB; default "
                                                "sqlite:///HOME/idsvc.db]."),
    model: Optional[Path] = typer.Option(None, help="Encoder checkpoint [env IDSVC_MODEL; default: the home's active "
                                                    "model, else the shipped one]."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda [env IDSVC_DEVICE]."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document on stdout (tables go to stderr)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No tables, notes or progress bars."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Log to stderr: -v info, -vv debug "
                                "[env IDSVC_LOG_LEVEL]."),
    _show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the versions of idsvc, the shipped model, torch and faiss."),
) -> None:
    ctx.obj = CliState(Output(json_, quiet), {"home": home, "db": db, "model": model, "device": device}, verbose)


faces.register(app)
extract.register(app)
archive.register(app)
app.add_typer(identities.app, name="identities")
admin.register(app)
models.register(app)


def run() -> None:
    """The console script. Click's usage errors (an unknown option, a value out of an option's range) become the
    same one line, exit 2 and ``--json`` error document as every other input error, instead of Click's help box."""
    # typer vendors Click; its exception classes are not re-exported (typer is pinned below 0.28 in pyproject.toml)
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    from cli.output import fail
    from idsvc.errors import IdsvcError

    try:
        rv = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()  # `idsvc` or `idsvc keys` alone: the help, as before
        raise SystemExit(exc.exit_code) from None
    except UsageError as exc:
        root = exc.ctx.find_root().obj if exc.ctx is not None else None
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        err = IdsvcError("invalid_argument", f"{exc.format_message()}{where}")
        raise SystemExit(fail(getattr(root, "out", None), err).exit_code) from None
    except ClickException as exc:
        sys.stderr.write(f"Error: {exc.format_message()}\n")
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        sys.stderr.write("Error: aborted\n")
        raise SystemExit(1) from None
    raise SystemExit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    run()
