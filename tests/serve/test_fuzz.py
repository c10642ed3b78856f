"""Property-based fuzzing of the HTTP API (schemathesis over the app's own OpenAPI spec), bounded:
a real uvicorn on loopback, a few dozen generated requests per operation (valid and invalid by the
spec), about a minute in all. No 5xx, no traceback in any body, every status documented, every
body matching its response schema. ``benchmarks/serve_fuzz.py`` runs the same for 20 minutes."""

from __future__ import annotations

import importlib.util

import httpx2
import pytest

from vestis.serve.app import ServeConfig, create_app

from .conftest import REPO_ROOT, ServerThread

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzer():
    spec = importlib.util.spec_from_file_location("serve_fuzz", REPO_ROOT / "benchmarks" / "serve_fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_requests_never_get_a_server_error_and_match_the_spec(fuzzer, index_copy, mini):
    with ServerThread(create_app(ServeConfig(catalogs=[index_copy]), encoder=mini)) as server:
        stats = fuzzer.fuzz(server.url, examples=30, seconds=90, log=lambda *_: None)
        assert httpx2.get(server.url + "/healthz").json() == {"status": "ok"}
    assert stats["operations"] >= 15 and stats["requests"] > 200, stats
    assert stats["server_errors"] == 0, stats["statuses"]
    assert stats["problems"] == [], stats["problems"][:5]
    assert stats["statuses"].get("200", 0) > 20  # not only refusals: valid requests get through too
