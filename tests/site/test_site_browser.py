"""The exported static site in headless Chromium (Debian's, driven by Playwright), served by a plain
static file server: the page's query embeddings against ``encode_texts``, its top 10 against
``vestis search`` for 50 queries, and a search typed by a user, with no request leaving the host.
Saves a screenshot to ``build/screenshots/site.png`` (``VESTIS_UPDATE_SCREENSHOTS=1``: the docs' copy)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from playwright.sync_api import expect

from vestis.data import demo_catalog_path
from vestis.search import Catalog

from .conftest import StaticServer

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / ("docs" if os.environ.get("VESTIS_UPDATE_SCREENSHOTS") else "build") / "screenshots"


def queries() -> list[str]:
    """50 queries: colour + article type pairs of the demo catalog, article types, and weighted terms."""
    rows = pq.read_table(demo_catalog_path(), columns=["articleType", "baseColour"]).to_pylist()
    pairs = sorted(
        {f"{r['baseColour']} {r['articleType']}".lower() for r in rows if r["baseColour"] and r["articleType"]}
    )
    kinds = sorted({r["articleType"] for r in rows if r["articleType"]})
    written = ["red summer dress", "something for a beach wedding", "formal black shoes for the office",
               "jeans, -blue", "watch:0.5, leather strap", "sports shoes, running:0.3, -white",
               "Café-style linen shirt!", "kurta for a festival", "warm winter jacket", "kids' t-shirt"]  # fmt: skip
    out = written + kinds[::7][:15] + pairs[::9]
    return out[:50]


@pytest.fixture(scope="module")
def served(site_fp32):
    with StaticServer(site_fp32) as server:
        yield server


def open_page(browser, url: str, refused: list[str] | None = None, problems: list[str] | None = None):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    origin = url.split("/", 3)[:3]
    if problems is not None:
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)

    def route(r):
        if r.request.url.split("/", 3)[:3] != origin and not r.request.url.startswith(("data:", "blob:")):
            if refused is not None:
                refused.append(r.request.url)
            return r.abort()
        return r.continue_()

    page.route("**/*", route)
    page.goto(url)
    page.evaluate("() => window.vestisSite.ready")
    return page


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_query_embeddings_match_encode_texts(browser, served, mini):
    texts = queries() + ["a " + "very " * 150 + "long query", "ÉTÉ robe à fleurs", "连衣裙 dress 👗"]
    texts = [t for t in texts if "," not in t and ":" not in t]  # single terms: one embedding each
    page = open_page(browser, served.url + "/")
    ours = page.evaluate("texts => window.vestisSite.embed(texts)", texts)
    page.close()
    cos = cosines(ours, mini.encode_texts(texts))
    print(f"\nfp32 page vs encode_texts: {len(texts)} texts, cosine min {cos.min():.7f}, mean {cos.mean():.7f}")
    assert cos.min() >= 0.999, [t for t, c in zip(texts, cos) if c < 0.999]


def test_same_top10_as_vestis_search(browser, served, site_index, mini):
    qs = queries()
    assert len(qs) == 50
    page = open_page(browser, served.url + "/")
    ours = page.evaluate(
        "async qs => { const out = []; for (const q of qs) out.push((await window.vestisSite.search(q, 10)).hits);"
        " return out; }",
        qs,
    )
    page.close()
    with Catalog.open(site_index, encoder=mini) as catalog:
        theirs = [catalog.search(q, k=10).hits for q in qs]
    differ = []
    for q, a, b in zip(qs, ours, theirs):
        ids_a, ids_b = [h["id"] for h in a], [h.id for h in b]
        if ids_a != ids_b:
            differ.append((q, ids_a, ids_b))
        assert np.allclose([h["score"] for h in a], [h.score for h in b], atol=2e-3), q
    assert not differ, differ


def test_user_search_matches_the_cli_and_stays_offline(browser, served, site_index, tmp_path):
    query = "black formal shoes"
    refused: list[str] = []
    problems: list[str] = []
    page = open_page(browser, served.url + "/", refused, problems)
    expect(page.locator("#status")).to_have_text(re.compile(r"^Ready: type a query \(300 items\)"))
    assert "300 items" in page.inner_text("#catalog-info")
    page.fill("#q", query)
    page.press("#q", "Enter")
    expect(page.locator("#status")).to_have_text(
        re.compile(r"^10 results for “black formal shoes” in \d+ ms"), timeout=60_000
    )
    ids = page.locator("#results li.card").evaluate_all("cards => cards.map(c => c.dataset.id)")
    run = subprocess.run(
        [sys.executable, "-m", "vestis", "search", str(site_index), query, "--k", "10", "--json"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    cli = json.loads(run.stdout.strip().splitlines()[-1])["results"]
    assert ids == [str(r["id"]) for r in cli]
    shown = (
        page.locator("#results li.card")
        .first.locator("dd")
        .evaluate_all("dds => dds.map(d => [d.dataset.field, d.textContent])")
    )
    assert shown and all(str(cli[0]["metadata"].get(field)) == text for field, text in shown), (shown, cli[0])
    page.wait_for_function("() => [...document.querySelectorAll('#results img')].every(i => i.naturalWidth > 0)")
    assert "q=black+formal+shoes" in page.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "site.png"))
    # an empty query is refused with a message, not searched
    page.fill("#q", "   ")
    page.press("#q", "Enter")
    expect(page.locator("#status")).to_have_text("Type a few words to search for.")
    # a shared link runs its search
    page.goto(served.url + "/?q=jeans&k=20")
    expect(page.locator("#status")).to_have_text(re.compile(r"^20 results for “jeans”"), timeout=180_000)
    page.close()
    assert not refused, refused
    assert not problems, problems


def test_int8_site_runs_the_graph_it_ships(browser, site_auto, mini):
    """The default (auto) site: its text tower is int8 where parity holds; the page runs that graph as
    onnxruntime does in Python (cosine >= 0.9999) and stays within the export's parity threshold of
    encode_texts (>= 0.99)."""
    import onnxruntime as ort

    from vestis.models.parity import MIN_COSINE

    folder, report = site_auto
    manifest = json.loads((folder / "vestis-site.json").read_text())
    assert manifest["text_model"]["precision"] == report.text_precision
    texts = [q for q in queries() if "," not in q and ":" not in q]
    with StaticServer(folder) as server:
        page = open_page(browser, server.url + "/")
        ours = page.evaluate("texts => window.vestisSite.embed(texts)", texts)
        page.close()
    session = ort.InferenceSession(str(folder / "model" / "text_model.onnx"), providers=["CPUExecutionProvider"])
    ids, mask = mini.tokenizer(texts)
    python = session.run(["text_embeds"], {"input_ids": ids, "attention_mask": mask})[0]
    same_graph = cosines(ours, python)
    to_reference = cosines(ours, mini.encode_texts(texts))
    print(f"\n{report.text_precision} page ({report.text_method}): vs the same graph in Python cos min "
          f"{same_graph.min():.6f}; vs encode_texts cos min {to_reference.min():.5f}")  # fmt: skip
    assert same_graph.min() >= 0.9999
    assert to_reference.min() >= MIN_COSINE
