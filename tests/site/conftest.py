"""Fixtures for the static site: a demo-catalog index built with vestis-mini, its sites (fp32 and
auto/int8 text towers), a plain static file server (what `python -m http.server` runs) and Chromium."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

from tests.conftest import chromium
from vestis.data import demo_catalog_path


def need_runtime() -> None:
    from vestis.site.runtime import runtime_complete, runtime_dir

    if not runtime_complete(runtime_dir()):
        if os.environ.get("CI"):
            pytest.fail("onnxruntime-web is missing: `make` fetches it (scripts/fetch_onnxruntime_web.py)")
        pytest.skip("onnxruntime-web not fetched (python scripts/fetch_onnxruntime_web.py)")


@pytest.fixture(scope="session")
def mini():
    from vestis.models import load_encoder

    return load_encoder("vestis-mini", precision="fp32")


@pytest.fixture(scope="session")
def site_index(tmp_path_factory, mini) -> Path:
    """The 300-product demo catalog indexed with vestis-mini (fp32)."""
    from vestis.index.build import build_index

    folder = tmp_path_factory.mktemp("site-index")
    build_index(demo_catalog_path(), folder / "shop", encoder=mini, quiet=True)
    return folder / "shop"


@pytest.fixture(scope="session")
def site_fp32(tmp_path_factory, site_index) -> Path:
    from vestis.site import export_site

    need_runtime()
    out = tmp_path_factory.mktemp("sites") / "fp32"
    export_site(site_index, out, text_precision="fp32")
    return out


@pytest.fixture(scope="session")
def site_auto(tmp_path_factory, site_index):
    """The default export (int8 where it passes parity), parity measured on a small sample to stay fast."""
    from vestis.models.parity import parity_data
    from vestis.site import export_site

    need_runtime()
    out = tmp_path_factory.mktemp("sites") / "auto"
    report = export_site(site_index, out, parity=parity_data(32, 64, 0))
    return out, report


class StaticServer:
    """A plain static file server on a free loopback port (http.server, as `python -m http.server`)."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StaticServer:
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def browser():
    with chromium() as b:
        yield b
