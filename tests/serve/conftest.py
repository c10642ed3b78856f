"""Fixtures for the HTTP service: a small index of real KAGL products built with the bundled
model, real uvicorn servers on free loopback ports, and in-process clients."""

from __future__ import annotations

import base64
import io
import shutil
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from PIL import Image
from starlette.testclient import TestClient

from vestis.data import demo_catalog_path
from vestis.index.build import build_index
from vestis.models import load_encoder
from vestis.serve.app import ServeConfig, create_app
from vestis.serve.security import hash_key

#: Article types of the test index (the demo catalog has up to 4 products of each).
KINDS = ("Jeans", "Watches", "Handbags", "Tshirts", "Heels", "Sunglasses", "Shirts", "Casual Shoes", "Kurtas",
         "Tops", "Sandals", "Flip Flops", "Sports Shoes", "Backpacks", "Belts", "Wallets", "Trousers", "Shorts",
         "Socks", "Dresses", "Sarees", "Caps", "Earrings")  # fmt: skip
REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key-0123456789abcdef"
OTHER_KEY = "second-key-fedcba9876543210"


def data_url(data: bytes) -> str:
    mime = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png(size=(40, 30), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def mini():
    # fp32: vectors from different batch compositions agree to 1e-5 (bf16 would blur that check)
    return load_encoder("vestis-mini", precision="fp32")


@pytest.fixture(scope="session")
def demo_table() -> pa.Table:
    return pq.read_table(demo_catalog_path())


@pytest.fixture(scope="session")
def catalog_table(demo_table) -> pa.Table:
    """About 90 real products: every demo product of the article types in ``KINDS``."""
    rows = [r for r in demo_table.to_pylist() if r["articleType"] in KINDS]
    return pa.Table.from_pylist(rows, schema=demo_table.schema)


@pytest.fixture(scope="session")
def outside_rows(demo_table, catalog_table) -> list[dict]:
    """Demo products that are not in the test index (for adding items)."""
    inside = set(catalog_table.column("id").to_pylist())
    return [r for r in demo_table.to_pylist() if r["id"] not in inside]


def build_test_index(folder: Path, table: pa.Table, encoder) -> Path:
    """``table`` written as a catalog in ``folder`` and built into ``folder/shop`` with ``encoder``."""
    pq.write_table(table, folder / "catalog.parquet")
    report = build_index(folder / "catalog.parquet", folder / "shop", encoder=encoder, quiet=True)
    assert report.total_items == table.num_rows
    return folder / "shop"


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory, catalog_table, mini):
    return build_test_index(tmp_path_factory.mktemp("serve-index"), catalog_table, mini)


@pytest.fixture
def index_copy(index_dir, tmp_path):
    """A private copy of the test index, for tests that write to it."""
    dst = tmp_path / "shop"
    shutil.copytree(index_dir, dst, ignore=shutil.ignore_patterns("write.lock"))
    return dst


class ServerThread:
    """A real uvicorn server on a free loopback port, in a thread of the test process."""

    def __init__(self, app) -> None:
        self.config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                     timeout_keep_alive=5, limit_concurrency=512)  # fmt: skip
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.app = app

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="session")
def server(index_dir, mini):
    """The open (no keys) server over the test index, with micro-batching. Its explanations are not rate
    limited: the modules sharing it ask for more than a burst (test_explain.py tests the limit)."""
    with ServerThread(create_app(ServeConfig(catalogs=[index_dir], explain_rate=0), encoder=mini)) as s:
        yield s


@pytest.fixture(scope="session")
def keyed_server(mini):
    """A server that needs API keys (no catalog)."""
    config = ServeConfig(key_hashes=frozenset({hash_key(KEY)}))
    with ServerThread(create_app(config, encoder=mini)) as s:
        yield s


def client_for(app, **kwargs) -> TestClient:
    """An in-process client that looks like a loopback peer asking for 127.0.0.1."""
    kwargs.setdefault("base_url", "http://127.0.0.1")
    kwargs.setdefault("client", ("127.0.0.1", 50000))
    return TestClient(app, **kwargs)


@pytest.fixture
def make_client(mini):
    """``make_client(**config)`` -> a started in-process client of an app with that configuration."""
    opened = []

    def make(*, client_kwargs=None, encoder=None, **config):
        c = client_for(create_app(ServeConfig(**config), encoder=encoder or mini), **(client_kwargs or {}))
        c.__enter__()
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.__exit__(None, None, None)
