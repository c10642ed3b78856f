"""``vestis serve``: the HTTP API and web page (registered on the main app in :mod:`vestis.cli`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer


def serve(
    ctx: typer.Context,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="YAML or TOML file of these settings; flags given here win over it."),
    ] = None,
    catalog: Annotated[
        list[str] | None,
        typer.Option(
            "--catalog",
            "--store",
            envvar="VESTIS_STORE",
            help="Index directory or postgresql:// URL to search (repeatable); its folder (or schema or database) "
            "name is the catalog name.",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model to serve (default: the catalog's, else vestis-mini).")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; without API keys, loopback only.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    api_keys_file: Annotated[
        Path | None,
        typer.Option("--api-keys-file", help="File of API keys, one per line (the key, or sha256:<hex> of it)."),
    ] = None,
    rate_limit: Annotated[
        float, typer.Option("--rate-limit", min=0, help="Requests per minute per API key (0: no limit).")
    ] = 600.0,
    explain_rate: Annotated[
        float,
        typer.Option(
            "--explain-rate",
            min=0,
            help="POST /v1/explain calls per minute per client (API key, else address); bursts of 10; 0: no limit.",
        ),
    ] = 30.0,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", min=0.001, help="Largest request body, MiB.")] = 16.0,
    max_image_mb: Annotated[float, typer.Option("--max-image-mb", min=0.001, help="Largest image, MiB.")] = 8.0,
    max_image_pixels: Annotated[
        int, typer.Option("--max-image-pixels", min=1, help="Decompression-bomb guard: most pixels in one image.")
    ] = 40_000_000,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds before a request gets 504.")] = 60.0,
    batching: Annotated[
        bool, typer.Option("--batching/--no-batching", help="Micro-batch concurrent requests into one encoder call.")
    ] = True,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Most items in one encoder call.")] = 64,
    max_wait_ms: Annotated[
        float, typer.Option("--max-wait-ms", min=0, help="Longest a request waits for others to join its batch.")
    ] = 5.0,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Intra-op threads for the encoder.")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the OpenAI-compatible embeddings API, search, classify and the web page over HTTP."""
    import uvicorn

    from vestis.serve.app import create_app, prepare
    from vestis.serve.config import read_config_file, serve_config
    from vestis.serve.security import KeyStore, load_key_hashes

    settings = {k: v for k, v in ctx.params.items() if k != "config_file"}
    if config_file is not None:  # the file's settings, where the command line does not give the flag
        for key, value in read_config_file(config_file).items():
            name = "catalog" if key == "catalogs" else key
            source = ctx.get_parameter_source(name)  # typer's own click: compare by name
            if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
                settings[name] = value
    hashes = load_key_hashes(env=None)
    keys = KeyStore(hashes, settings["api_keys_file"])  # a bad keys file: one line, exit 2
    log_level = settings.pop("log_level")
    config = serve_config(key_hashes=hashes, **settings)
    host, port, batching = config.host, config.port, config.batching
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    encoder = prepare(config)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    if keys:
        notice = f"{len(keys)} API key(s) configured: every route but /healthz, /readyz and the page needs one"
        if config.api_keys_file is not None:
            notice += f"; {config.api_keys_file} is read again when it changes"
    else:
        notice = (
            "no API keys configured: the API is open to anyone on this machine, so it listens on loopback "
            "only (set VESTIS_API_KEYS or --api-keys-file to require keys)"
        )
    print(
        f"vestis serve: {encoder.name} on {where} ({'micro-batching' if batching else 'no batching'})", file=sys.stderr
    )
    print(f"vestis serve: {notice}", file=sys.stderr)
    app = create_app(config, encoder=encoder)
    uvicorn.run(
        app, host=host, port=port, log_level=log_level.lower(), proxy_headers=False, server_header=False,
        timeout_keep_alive=5, limit_concurrency=1024, timeout_graceful_shutdown=10,
    )  # fmt: skip
