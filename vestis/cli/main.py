"""The ``vestis`` app: every command registered, and :func:`main`, the entry point.

Usage errors (an unknown flag or command, a missing argument, a value out of range)
print click's usage message naming the flag and exit 2.  Errors the user can fix
(:class:`~vestis.errors.VestisError`) print one line, ``error: ...``, and exit 2;
anything unexpected prints one line too and exits 1, with the traceback only
under ``--debug``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from vestis.cli import catalog, db, evaluate, export, models, tagging, workflows
from vestis.errors import VestisError

app = typer.Typer(
    name="vestis",
    help="Fashion images and text in one embedding space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        from vestis import __version__

        print(f"vestis {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug


def _register() -> None:
    from vestis.serve.cli import serve

    for command in (
        models.models,
        models.embed,
        catalog.search,
        catalog.similar,
        catalog.recommend,
        catalog.explain,
        tagging.tag,
        tagging.classify,
    ):
        app.command()(command)
    app.add_typer(catalog.index_app, name="index")
    app.add_typer(db.db_app, name="db")
    app.add_typer(evaluate.eval_app, name="eval")
    app.add_typer(export.export_app, name="export")
    app.command()(workflows.train)
    app.command()(workflows.demo)
    app.command()(serve)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; usage errors as click shows them, other errors as one line."""
    from rich.text import Text

    from vestis.cli.output import err

    try:
        app(args=argv, prog_name="vestis", standalone_mode=True)
    except VestisError as exc:
        if _state["debug"]:
            err.print_exception()
        err.print(Text.assemble(("error: ", "red"), str(exc)))
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:
        if _state["debug"]:
            err.print_exception()
        err.print(
            Text.assemble(("error: ", "red"), f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)")
        )
        sys.exit(1)
