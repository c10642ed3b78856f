"""A bounded loopback load test: the benchmark's client against a test server for a few seconds.

Every request is answered, with 200, and none is dropped (benchmarks/serve_load.py measures
throughput; this only checks the server holds up under concurrent load).
"""

from __future__ import annotations

import asyncio
import importlib.util

import httpx2
import pytest

from .conftest import REPO_ROOT


@pytest.fixture(scope="module")
def load():
    spec = importlib.util.spec_from_file_location("serve_load", REPO_ROOT / "benchmarks" / "serve_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("scenario", ["text", "image", "search"])
def test_every_request_is_answered(load, server, catalog_table, scenario):
    requests = load.payloads(catalog_table, scenario)
    run = asyncio.run(load.drive(server.url, requests, concurrency=16, duration=2.0, warmup=0.5))
    assert run["requests"] > 16 and run["dropped"] == 0 and run["failures"] == []
    assert run["statuses"] == {"200": run["requests"]}, run
    assert httpx2.get(server.url + "/healthz").status_code == 200
