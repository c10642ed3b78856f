"""Shared fixtures: real KAGL images and titles, and tiny random-weight checkpoints."""

from __future__ import annotations

import io
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from vestis.data import demo_catalog_path, kagl_parquets, shared_data_dir

REPO = Path(__file__).resolve().parents[1]
REF_PYTHON = REPO / ".venv-ref" / "bin" / "python"

torch.set_num_threads(2)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@contextmanager
def chromium():
    """Headless Debian Chromium under Playwright, for the page tests; skipped where it is missing (failed in CI)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium for this test")
        pytest.skip("Debian's chromium is not installed here (apt-get install chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


EXTRA_TEXTS = [
    "red summer dress",
    "Men's  navy-blue slim fit JEANS &amp; belt",
    "something for a beach wedding",
    "a " + "very " * 120 + "long description that must be truncated to the context length",
]


def _catalog_rows() -> list[dict]:
    files = kagl_parquets()
    table = pq.read_table(files[0] if files else demo_catalog_path())
    rows = table.slice(0, 2000).to_pylist()
    titled = [r for r in rows if r["productDisplayName"]][:12]
    untitled = [r for r in rows if not r["productDisplayName"]][:4]
    return titled + untitled


@pytest.fixture(scope="session")
def catalog_rows() -> list[dict]:
    return _catalog_rows()


@pytest.fixture(scope="session")
def all_titles() -> list[str]:
    """Every product title of the KAGL catalog (or of the demo set when it is absent)."""
    files = kagl_parquets() or [demo_catalog_path()]
    titles: list[str] = []
    for f in files:
        titles += [t for t in pq.read_table(f, columns=["productDisplayName"]).column(0).to_pylist() if t]
    return titles


@pytest.fixture(scope="session")
def sample_images(catalog_rows) -> list[bytes]:
    """KAGL catalog photos, street photos of other sizes, and odd-sized synthetic images."""
    images = [r["image"] for r in catalog_rows]
    root = shared_data_dir()
    if root and (root / "ccp" / "ccp.parquet").is_file():
        images += pq.read_table(root / "ccp" / "ccp.parquet", columns=["image"]).slice(0, 3).column(0).to_pylist()
    rng = np.random.default_rng(0)
    for w, h in ((97, 61), (225, 301), (300, 299)):  # odd margins exercise the crop rounding
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
        images.append(buf.getvalue())
    return images


@pytest.fixture(scope="session")
def sample_texts(catalog_rows) -> list[str]:
    return [r["productDisplayName"] for r in catalog_rows if r["productDisplayName"]] + EXTRA_TEXTS


@pytest.fixture(scope="session")
def image_files(tmp_path_factory, sample_images) -> list[str]:
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, data in enumerate(sample_images):
        ext = "png" if data[:4] == b"\x89PNG" else "jpg"
        path = folder / f"{i:02d}.{ext}"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def perturb_(model: torch.nn.Module, seed: int) -> None:
    """Add noise to every parameter so LayerNorm gains and biases are not 1 and 0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def features(out) -> torch.Tensor:
    """transformers 5: ``get_*_features`` returns an object whose embedding is ``pooler_output``."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def normalized(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=-1).numpy()


def need_reference_env() -> None:
    """The open_clip reference lives in .venv-ref (made by `make test`); CI must have it."""
    if not REF_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{REF_PYTHON} is missing: `make test` builds it")
        pytest.skip("open_clip reference environment .venv-ref not built (run `make test`)")


# ---------------------------------------------------------------- parity report

_PARITY = pytest.StashKey[dict]()


def pytest_configure(config):
    config.stash[_PARITY] = {}


@pytest.fixture
def record_parity(request):
    """Record a measured max |difference| so the run ends with a parity table (and parity.json)."""
    table = request.config.stash[_PARITY]

    def record(fmt: str, what: str, ours: np.ndarray, ref: np.ndarray, limit: float) -> float:
        diff = float(np.abs(np.asarray(ours, dtype=np.float64) - np.asarray(ref, dtype=np.float64)).max())
        table[f"{fmt} | {what}"] = {"max_abs_diff": diff, "limit": limit, "n": int(np.asarray(ours).shape[0])}
        assert diff < limit, f"{fmt} {what}: max abs diff {diff:.3g} >= {limit}"
        return diff

    return record


def pytest_terminal_summary(terminalreporter, config):
    table = config.stash.get(_PARITY, {})
    if not table:
        return
    terminalreporter.section("parity with the reference libraries (fp32, max |diff|)")
    for key, row in sorted(table.items()):
        terminalreporter.write_line(f"{key:<72} {row['max_abs_diff']:.2e}  (limit {row['limit']:.0e}, n={row['n']})")
    out = REPO / "build" / "parity.json"
    out.parent.mkdir(exist_ok=True)
    import json

    out.write_text(json.dumps(table, indent=2, sort_keys=True))


# ------------------------------------------------------------- a catalog with ratings

RATED_KINDS = ("Jeans", "Tshirts", "Heels", "Watches", "Handbags", "Casual Shoes", "Shirts", "Sunglasses", "Kurtas",
               "Tops", "Sandals", "Backpacks")  # fmt: skip


def rating_of(i: int) -> float | None:
    """A rating for the i-th row: every 7th NaN, every 11th missing, else 1.0 to 5.0."""
    if i % 7 == 3:
        return float("nan")
    if i % 11 == 5:
        return None
    return 1.0 + (i * 37 % 41) / 10


@pytest.fixture(scope="session")
def rated_index(tmp_path_factory):
    """About 40 demo products of a dozen article types, with a float ``rating`` column that holds
    NaNs and nulls, indexed with vestis-mini (fp32): ``(index dir, rows)``."""
    import pyarrow as pa

    from vestis.index.build import build_index
    from vestis.models import load_encoder

    table = pq.read_table(demo_catalog_path())
    rows = [r for r in table.to_pylist() if r["articleType"] in RATED_KINDS]
    for i, r in enumerate(rows):
        r["rating"] = rating_of(i)
    schema = table.schema.append(pa.field("rating", pa.float64()))
    folder = tmp_path_factory.mktemp("rated")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "catalog.parquet")
    encoder = load_encoder("vestis-mini", precision="fp32")
    build_index(folder / "catalog.parquet", folder / "rated", encoder=encoder, quiet=True)
    return folder / "rated", rows


# ------------------------------------------------------------- a real PostgreSQL


@pytest.fixture(scope="session")
def pg_data_dir() -> Path:
    """The data directory of the session's PostgreSQL (:func:`pg_server`): its own folder, not pytest's (whose
    0700 folders and clean-ups the server's user must not depend on); the server is stopped at the end."""
    import shutil
    import tempfile

    from vestis.index.pgserver import server_url, stop_server

    folder = Path(tempfile.mkdtemp(prefix="vestis-pg-"))
    try:
        yield folder / "data"
        if (folder / "data" / "PG_VERSION").exists() and server_url(folder / "data"):
            stop_server(folder / "data")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(pg_data_dir) -> str:
    """A real PostgreSQL 18 with pgvector for this test session, started by vestis' own code
    (:func:`vestis.index.pgserver.start_server`); its ``postgresql://`` URL. Each test that writes
    uses its own schema (:func:`pg_store_url`)."""
    from vestis.index.pgserver import start_server

    return start_server(pg_data_dir)


@pytest.fixture
def pg_restart(pg_server, pg_data_dir):
    """``with pg_restart():`` stops the session's server for the block and starts it again after (same URL)."""
    import contextlib

    from vestis.index.pgserver import start_server, stop_server

    @contextlib.contextmanager
    def restart():
        assert stop_server(pg_data_dir)
        try:
            yield
        finally:
            assert start_server(pg_data_dir) == pg_server

    return restart


@pytest.fixture
def pg_store_url(pg_server) -> str:
    """A fresh catalog location on the session's server: its own schema."""
    import uuid

    return f"{pg_server}{'&' if '?' in pg_server else '?'}schema=t_{uuid.uuid4().hex[:12]}"
