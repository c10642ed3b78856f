"""API keys, rate limits, request size limits and timeouts: one ASGI middleware in front of the app.

* **Keys** come from ``--api-keys-file`` (one per line; ``#`` comments; a line may be
  the key itself or ``sha256:<hex>`` of it, so the file need not hold secrets) and from
  ``VESTIS_API_KEYS`` (comma-separated). Only their SHA-256 digests are kept in memory;
  a request's key (``Authorization: Bearer KEY`` as OpenAI's clients send it, or
  ``X-API-Key``) is hashed and compared with :func:`hmac.compare_digest` against every
  stored digest. With keys configured every route needs one, except the health checks
  and the web page's static files (which hold no data).
* **No keys**: the server is open, so it must listen on loopback only (the CLI refuses
  another address), and the middleware answers 403 to any peer that is not loopback and
  to any ``Host`` header that is not a loopback name (a DNS-rebinding page in a browser
  cannot reach it either).
* **Rate limits**: a token bucket per key (``rate`` requests per minute, bursts of
  ``burst``); over it: 429 with ``Retry-After``. Costly routes (``POST /v1/explain``: a batch
  of occlusions per call) have a tighter bucket of their own per client (its key, else its
  address), on servers without keys too: one client's flood of them is turned away at the
  door, and never takes the encoder from other clients' searches.
* **Sizes**: a declared ``Content-Length`` over the limit is refused before the body is
  read (413); a chunked body is counted as it arrives and cut off at the limit.
* **Content types**: a body is JSON or a multipart form; anything else is a 415.
* **Timeouts**: a request not answered within ``timeout`` seconds gets 504.

Errors are OpenAI-shaped JSON: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from starlette.exceptions import HTTPException

from vestis.errors import InputError

log = logging.getLogger("vestis.serve")
ENV_KEYS = "VESTIS_API_KEYS"
MIN_KEY_LENGTH = 12
_HASHED = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key: what vestis stores (and what ``sha256:`` lines in a keys file hold)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _parse_key(text: str, source: str) -> str:
    m = _HASHED.match(text)
    if m:
        return m.group(1).lower()
    if len(text) < MIN_KEY_LENGTH or any(c.isspace() for c in text):
        raise InputError(f"{source}: API keys must be at least {MIN_KEY_LENGTH} characters without spaces")
    return hash_key(text)


@dataclass(frozen=True)
class Grant:
    """What one key may do: ``read`` (embeddings, search, classify, catalog reads, the API's pages),
    ``write`` (add, update and delete catalog items), on ``catalogs`` (names; None: all of them)."""

    read: bool = True
    write: bool = True
    catalogs: frozenset[str] | None = None

    def allows_catalog(self, name: str) -> bool:
        return self.catalogs is None or name in self.catalogs

    def describe(self) -> str:
        what = "+".join(s for s, on in (("read", self.read), ("write", self.write)) if on) or "nothing"
        return what + ("" if self.catalogs is None else f" on {', '.join(sorted(self.catalogs))}")


FULL = Grant()


def _parse_grant(words: list[str], source: str) -> Grant:
    """``read``, ``write``, ``catalog:NAME`` (repeatable), separated by spaces or commas; none: read+write, all."""
    read = write = False
    catalogs: set[str] = set()
    for word in (w for part in words for w in part.split(",") if w):
        lowered = word.lower()
        if lowered == "read":
            read = True
        elif lowered == "write":
            write = True
        elif lowered.startswith("catalog:") and word[8:]:
            catalogs.add(word[8:])
        else:
            raise InputError(f"{source}: unknown scope {word!r}; use read, write and catalog:NAME")
    if not read and not write:  # only catalogs named (or nothing): read and write on them
        read = write = True
    return Grant(read, write, frozenset(catalogs) if catalogs else None)


def load_keys(file: str | Path | None = None, env: str | None = None) -> dict[str, Grant]:
    """Digest -> :class:`Grant` of the keys in ``file`` and in ``env`` (default: ``$VESTIS_API_KEYS``).

    A line of the file is a key (or ``sha256:<hex>`` of it) and, optionally, its scopes:
    ``read``, ``write``, ``catalog:NAME``; a key without scopes may read and write every catalog,
    as do the keys of ``VESTIS_API_KEYS``."""
    keys: dict[str, Grant] = {}
    if file is not None:
        path = Path(file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--api-keys-file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        for n, line in enumerate(text.splitlines(), 1):
            words = line.split()
            if words and not words[0].startswith("#"):
                source = f"{path}, line {n}"
                keys[_parse_key(words[0], source)] = _parse_grant(words[1:], source)
        if not keys:
            raise InputError(f"--api-keys-file {path}: no keys in it")
    env = os.environ.get(ENV_KEYS, "") if env is None else env
    for part in env.split(","):
        if part.strip():
            keys[_parse_key(part.strip(), ENV_KEYS)] = FULL
    return keys


def load_key_hashes(file: str | Path | None = None, env: str | None = None) -> frozenset[str]:
    """Digests of the keys in ``file`` and in ``env`` (default: ``$VESTIS_API_KEYS``), whatever their scopes."""
    return frozenset(load_keys(file, env))


def is_loopback_host(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``... (an address or name that stays on this machine)."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(header: str) -> str:
    header = header.strip()
    if header.startswith("["):  # [::1]:8000
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class KeyStore:
    """Hashed API keys and their grants: ``lookup(key)`` gives ``(key id, Grant)`` or None.

    ``hashes``: keys that may do everything (``VESTIS_API_KEYS``). ``file``: a keys file, read
    again when it changes (checked at most every ``recheck`` seconds), so keys are rotated without a
    restart; a file that cannot be read or parsed then keeps the previous keys (and is logged)."""

    def __init__(self, hashes: Iterable[str] = (), file: str | Path | None = None, *, recheck: float = 1.0) -> None:
        self._static = {h: FULL for h in hashes}
        self._file = Path(file).expanduser() if file is not None else None
        self._recheck = recheck
        self._stamp: tuple | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._grants: dict[bytes, Grant] = {}
        self._load(self._stat())

    def _stat(self) -> tuple | None:
        if self._file is None:
            return None
        try:
            st = self._file.stat()
        except OSError:
            return ("missing",)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self, stamp: tuple | None) -> None:
        grants = dict(self._static)
        if self._file is not None:
            grants.update(load_keys(self._file, env=""))
        self._grants = {bytes.fromhex(h): g for h, g in sorted(grants.items())}
        self._stamp = stamp

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._file is None or now - self._checked < self._recheck:
            return
        with self._lock:
            self._checked = now
            stamp = self._stat()
            if stamp == self._stamp:
                return
            try:
                self._load(stamp)
                log.info("API keys re-read from %s: %d key(s)", self._file, len(self._grants))
            except InputError as exc:
                self._stamp = stamp  # not retried until the file changes again
                log.error("API keys file changed but cannot be used (%s); keeping the previous keys", exc)

    def __bool__(self) -> bool:
        return bool(self._grants) or self._file is not None

    def __len__(self) -> int:
        return len(self._grants)

    def lookup(self, key: str | None) -> tuple[str, Grant] | None:
        self._refresh()
        if not key:
            return None
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found = None
        for d, grant in self._grants.items():  # compare against all: the time does not depend on which matched
            if hmac.compare_digest(d, digest):
                found = (d.hex()[:12], grant)
        return found

    def check(self, key: str | None) -> str | None:
        found = self.lookup(key)
        return found[0] if found is not None else None


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute on average, bursts of ``burst``."""

    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, math.ceil(per_minute / 6)))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key: str) -> float:
        """0 if the request may go ahead, else the seconds until it may."""
        if not self.enabled:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


def is_write(method: str, path: str) -> bool:
    """A request that changes a catalog: POST, PUT, PATCH or DELETE under /v1/catalogs/."""
    return method in ("POST", "PUT", "PATCH", "DELETE") and path.startswith("/v1/catalogs/")


def permission_problem(grant: Grant, method: str, path: str) -> tuple[str, str] | None:
    """(code, message) when ``grant`` does not cover the request, else None. A catalog named in the
    body (``/v1/search``'s ``catalog``) is checked by the route."""
    if is_write(method, path):
        if not grant.write:
            return "insufficient_scope", f"this API key may not write to catalogs (it may {grant.describe()})"
    elif not grant.read:
        return "insufficient_scope", f"this API key may not read (it may {grant.describe()})"
    parts = path.split("/")
    if len(parts) > 3 and parts[1:3] == ["v1", "catalogs"] and parts[3]:
        name = unquote(parts[3])
        if not grant.allows_catalog(name):
            return "catalog_not_allowed", f"this API key may not use catalog {name!r} (it may {grant.describe()})"
    return None


def _accepted_body_type(content_type: str | None) -> bool:
    """JSON or a multipart form (or none given: read as JSON, as OpenAI's clients send it)."""
    media = (content_type or "").split(";")[0].strip().lower()
    return media in ("", "application/json", "multipart/form-data") or media.endswith("+json")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than the limit of {limit:,} bytes")


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


async def send_error(send, status: int, message: str, type_: str, code: str | None = None, headers=()) -> None:
    body = json.dumps(error_body(message, type_, code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_too_many(send, message: str, wait: float) -> None:
    """429 ``rate_limit_exceeded`` with ``Retry-After``: the whole seconds until ``wait`` has passed."""
    await send_error(send, 429, message, "rate_limit_error", "rate_limit_exceeded",
                     [("retry-after", str(max(1, math.ceil(wait))))])  # fmt: skip


#: Sent with every response: no MIME sniffing, no referrer, no framing; the page loads only its own files.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
]


@dataclass(frozen=True)
class RouteLimit:
    """A token bucket per client for one costly route (``method path``), besides the per-key one."""

    method: str
    path: str
    limiter: RateLimiter

    def refusal(self, wait: float) -> str:
        per = f"{self.limiter.rate * 60:g} a minute per client, bursts of {self.limiter.burst:g}"
        return f"{self.method} {self.path} is limited to {per}; retry in {wait:.1f} s"


@dataclass
class GuardSettings:
    keys: KeyStore
    limiter: RateLimiter
    max_body_bytes: int
    timeout: float
    route_limits: tuple[RouteLimit, ...] = ()
    public_paths: tuple[str, ...] = ("/healthz", "/readyz")
    public_prefixes: tuple[str, ...] = ("/static/",)
    page_paths: tuple[str, ...] = ("/", "/index.html", "/favicon.ico")
    slow_prefixes: tuple[str, ...] = ("/v1/catalogs/",)  # writes may re-embed many items
    slow_timeout: float = 600.0


class GuardMiddleware:
    """Loopback/host checks, API keys, rate limit, body limit and timeout (see the module docstring)."""

    def __init__(self, app, settings: GuardSettings) -> None:
        self.app = app
        self.s = settings

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.s
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        public = path in s.public_paths or path in s.page_paths or path.startswith(s.public_prefixes)
        client = (scope.get("client") or ("", 0))[0] or ""  # who a costly route's bucket belongs to: key, else address
        if not s.keys:
            if not is_loopback_host(client):
                await send_error(send, 403, "this server has no API keys and answers loopback clients only",
                                 "permission_error", "loopback_only")  # fmt: skip
                return
            host = _host_of(headers.get("host", ""))
            if host and not is_loopback_host(host):
                await send_error(
                    send,
                    403,
                    f"host {host!r} is not allowed: without API keys this server answers requests for localhost only",
                    "permission_error",
                    "host_not_allowed",
                )
                return
        elif not public:
            token = headers.get("x-api-key")
            auth = headers.get("authorization", "")
            if not token and auth[:7].lower() == "bearer ":
                token = auth[7:].strip()
            found = s.keys.lookup(token)
            if found is None:
                message = "missing API key: send 'Authorization: Bearer KEY'" if not token else "invalid API key"
                await send_error(send, 401, message, "invalid_request_error", "invalid_api_key",
                                 [("www-authenticate", "Bearer")])  # fmt: skip
                return
            key_id, grant = found
            client = f"key:{key_id}"
            refusal = permission_problem(grant, scope.get("method", "GET"), path)
            if refusal is not None:
                await send_error(send, 403, refusal[1], "permission_error", refusal[0])
                return
            scope.setdefault("state", {})["key_id"] = key_id
            scope["state"]["grant"] = grant
            wait = s.limiter.acquire(key_id)
            if wait > 0:
                await send_too_many(send, f"rate limit reached for this key; retry in {wait:.1f} s", wait)
                return
        for limit in s.route_limits:
            if path == limit.path and scope.get("method") == limit.method and (wait := limit.limiter.acquire(client)):
                await send_too_many(send, limit.refusal(wait), wait)
                return
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await send_error(send, 400, "bad Content-Length header", "invalid_request_error", "bad_request")
                return
            if size > s.max_body_bytes:
                await send_error(send, 413, f"request body of {size:,} bytes is larger than the limit of "
                                 f"{s.max_body_bytes:,}", "invalid_request_error", "request_too_large")  # fmt: skip
                return
        if scope.get("method") in ("POST", "PUT", "PATCH") and not _accepted_body_type(headers.get("content-type")):
            media = headers.get("content-type", "").split(";")[0].strip()
            await send_error(send, 415, f"unsupported content type {media!r}; send application/json "
                             "(or multipart/form-data where a file is sent)", "invalid_request_error",
                             "unsupported_media_type")  # fmt: skip
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > s.max_body_bytes:
                    raise BodyTooLarge(s.max_body_bytes)
            return message

        started = False
        extra = SECURITY_HEADERS if not path.startswith(("/docs", "/redoc")) else SECURITY_HEADERS[:3]

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        timeout = s.slow_timeout if path.startswith(s.slow_prefixes) and scope.get("method") != "GET" else s.timeout
        try:
            await asyncio.wait_for(self.app(scope, limited_receive, tracking_send), timeout)
        except TimeoutError:
            if not started:
                await send_error(send, 504, f"the request took longer than {timeout:g} s", "timeout_error", "timeout")
