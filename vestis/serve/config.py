"""What ``vestis serve`` is started with: :class:`ServeConfig`, from flags or a YAML/TOML file.

A deployment is a file (``vestis serve --config serve.yaml``) holding what the flags hold,
under the flags' names (``max-batch`` or ``max_batch``); flags given on the command line win
over the file. Paths in the file are relative to the file's folder::

    catalogs: [indexes/shop]      # or catalog: indexes/shop
    model: vestis-mini
    port: 8000
    api-keys-file: keys.txt
    max-batch: 64
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vestis.errors import InputError
from vestis.index.stores import is_store_url

MiB = 1024 * 1024


@dataclass
class ServeConfig:
    """Everything the HTTP service is started with (see ``vestis serve --help``)."""

    catalogs: Sequence[str | Path] = ()  # index directories or postgresql:// URLs
    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    key_hashes: frozenset[str] = frozenset()  # keys that may read and write everything (VESTIS_API_KEYS)
    api_keys_file: Path | None = None  # keys with scopes; read again when it changes
    rate_limit: float = 600.0  # requests per minute per key; 0 = unlimited
    rate_burst: int | None = None  # default: a tenth of a minute's worth, at least 1
    explain_rate: float = 30.0  # POST /v1/explain per minute per client (its key, else its address); 0 = unlimited
    explain_burst: int = 10
    explain_concurrency: int = 2  # explanations computed at once, across clients (others wait their turn)
    max_body_bytes: int = 16 * MiB
    max_image_bytes: int = 8 * MiB
    max_image_pixels: int = 40_000_000
    max_inputs: int = 256
    max_text_chars: int = 8192
    request_timeout: float = 60.0
    batching: bool = True
    max_batch: int = 64  # the most items in one encoder call; a larger request is split
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    threads: int | None = None


def serve_config(
    *, catalog=(), max_body_mb: float = 16.0, max_image_mb: float = 8.0, timeout: float = 60.0, **flags
) -> ServeConfig:
    """The :class:`ServeConfig` of ``vestis serve``'s flags (MiB and seconds as the flags give them).
    Without API keys the server listens on loopback only."""
    from vestis.serve.security import is_loopback_host

    config = ServeConfig(catalogs=list(catalog or []), max_body_bytes=int(max_body_mb * MiB),
                         max_image_bytes=int(max_image_mb * MiB), request_timeout=timeout, **flags)  # fmt: skip
    if not config.key_hashes and config.api_keys_file is None and not is_loopback_host(config.host):
        raise InputError(
            f"refusing to listen on {config.host} without API keys: give --api-keys-file or VESTIS_API_KEYS, "
            "or listen on 127.0.0.1"
        )
    return config


class ServeFile(BaseModel):
    """The keys a config file may hold: the flags of ``vestis serve``, with their checks."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    catalogs: list[str] | None = Field(None, alias="catalog")
    model: str | None = None
    host: str | None = None
    port: int | None = Field(None, ge=0, le=65535)
    api_keys_file: Path | None = None
    rate_limit: float | None = Field(None, ge=0)
    explain_rate: float | None = Field(None, ge=0)
    max_body_mb: float | None = Field(None, ge=0.001)
    max_image_mb: float | None = Field(None, ge=0.001)
    max_image_pixels: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, ge=0.1)
    batching: bool | None = None
    max_batch: int | None = Field(None, ge=1)
    max_wait_ms: float | None = Field(None, ge=0)
    threads: int | None = Field(None, ge=1)
    log_level: str | None = None

    @field_validator("catalogs", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, (str, Path)) else value


def read_config_file(path: str | Path) -> dict:
    """The settings in a YAML or TOML file, keyed by the flags' parameter names (``max_batch``);
    relative paths are taken from the file's folder. Unknown keys and bad values are errors."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--config {path}: cannot read it ({exc.strerror})") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"--config {path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'} ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"--config {path}: expected a mapping of settings, like 'port: 8000'")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    try:
        parsed = ServeFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        known = ", ".join(k.replace("_", "-") for k in ServeFile.model_fields)
        hint = f" (the settings are: {known})" if first["type"] == "extra_forbidden" else ""
        raise InputError(f"--config {path}: {where}: {first['msg']}{hint}") from None
    values = parsed.model_dump(exclude_none=True)
    base = path.parent
    if "catalogs" in values:
        values["catalogs"] = [
            x if is_store_url(x) else p if p.is_absolute() else base / p
            for x, p in ((x, Path(x).expanduser()) for x in values["catalogs"])
        ]
    if "api_keys_file" in values:
        keys = Path(values["api_keys_file"]).expanduser()
        values["api_keys_file"] = keys if keys.is_absolute() else base / keys
    return values
