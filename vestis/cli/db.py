"""``vestis db start|stop``: a single-machine PostgreSQL with pgvector for ``--store postgresql://...``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from vestis.cli.options import JsonOpt
from vestis.cli.output import out, print_json

db_app = typer.Typer(help="A local PostgreSQL + pgvector server for the shared store.", no_args_is_help=True)

DataOpt = Annotated[Path, typer.Option("--data", help="The server's data directory (created on first start).")]


@db_app.command("start")
def db_start(
    data: DataOpt,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Listen on TCP on this address too (default: the Unix socket only). "
            "An address other than loopback needs VESTIS_DB_PASSWORD.",
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="TCP port (default 5432; alone: on 127.0.0.1).")
    ] = None,
    shared_buffers: Annotated[
        str | None,
        typer.Option(
            "--shared-buffers",
            help="The server's buffer cache, e.g. 4GB, kept for later starts "
            "(default for a new data directory: a quarter of this machine's memory).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start PostgreSQL on DATA (initialised on first use) and print its URL for --store / VESTIS_STORE."""
    from vestis.index.pgserver import configured_shared_buffers, start_server

    password = os.environ.get("VESTIS_DB_PASSWORD") or None
    url = start_server(data, host=host, port=port, password=password, shared_buffers=shared_buffers)
    memory = configured_shared_buffers(data)
    if as_json:
        print_json({"data": str(data), "url": url, "shared_buffers": memory})
        return
    out.print(f"PostgreSQL with pgvector is running on {data}" + (f" (shared_buffers {memory})" if memory else ""))
    out.print(f"export VESTIS_STORE='{url}'", highlight=False)
    if password and host is not None:
        out.print("clients on other machines give the password too: PGPASSWORD, or postgres:PASSWORD@ in the URL")


@db_app.command("stop")
def db_stop(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Stop the server running on DATA."""
    from vestis.index.pgserver import stop_server

    stopped = stop_server(data)
    if as_json:
        print_json({"data": str(data), "stopped": stopped})
        return
    out.print(f"stopped the server on {data}" if stopped else f"no server was running on {data}")
