"""The web page end to end in headless Chromium (Debian's ``chromium``, driven by Playwright).

Type a query, upload a photo, read its tags, click "more like this", steer and filter, and
check what the page shows. Saves a screenshot to ``build/screenshots/web.png``; with
``VESTIS_UPDATE_SCREENSHOTS=1`` it refreshes the documentation's copy,
``docs/screenshots/web.png``, on purpose (a test run never dirties the tree otherwise).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from .conftest import REPO_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SCREENSHOTS = REPO_ROOT / ("docs" if os.environ.get("VESTIS_UPDATE_SCREENSHOTS") else "build") / "screenshots"
SCREENSHOT = SCREENSHOTS / "web.png"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium for this test")
        pytest.skip("Debian's chromium is not installed here (apt-get install chromium); CI installs it")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def settle(page, text: str = "") -> None:
    """Wait until the search under way has shown its results (its status names ``text``).

    Locator assertions, not wait_for_function: the page's CSP forbids the eval() that needs.
    """
    expect(page.locator("#status")).to_have_text(re.compile(rf"^(?!Searching).*{re.escape(text)}"), timeout=30_000)


def test_search_upload_more_like_this(browser, server, catalog_table):
    rows = catalog_table.to_pylist()
    heel = next(r for r in rows if r["articleType"] == "Heels")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(server.url + "/")
    page.wait_for_selector(".facet legend:text-is('articleType')")
    assert page.inner_text("#catalog-info").startswith("shop: 81 items")

    # type a query
    page.fill("#q", "jeans")
    page.press("#q", "Enter")
    settle(page, "results for")
    first = page.locator("#results li.card").first
    assert first.locator("dd[data-field=articleType]").inner_text() == "Jeans"
    assert first.locator("img").get_attribute("src").startswith("data:image/")
    assert "results for “jeans”" in page.inner_text("#status")

    # steer and filter
    page.click(".chip:text-is('darker')")
    settle(page, "steered darker")
    assert page.get_attribute(".chip:text-is('darker')", "aria-pressed") == "true"
    page.click(".chip:text-is('darker')")
    page.check("input[data-field=baseColour][value=Black]")
    settle(page, "1 filter")
    colours = page.locator("#results dd[data-field=baseColour]").all_inner_texts()
    assert colours and set(colours) == {"Black"}
    page.uncheck("input[data-field=baseColour][value=Black]")
    settle(page, "results for")
    assert "filter" not in page.inner_text("#status")

    # upload a photo: it is found first, and tagged
    page.set_input_files("#file", files=[{"name": "heel.jpg", "mimeType": "image/jpeg", "buffer": heel["image"]}])
    settle(page, "your photo")
    expect(page.locator("#results li.card").first).to_have_attribute("data-id", str(heel["id"]))
    assert page.is_visible("#preview")
    page.wait_for_selector("#tag-list .tag-group")
    tag = page.locator(".tag-group:has(h3:text-is('articleType')) .tag-label").first.inner_text()
    assert tag == "Heels"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))

    # more like this: the item itself is left out, its neighbours shown
    page.locator("#results li.card").first.get_by_role("button", name="More like this").click()
    settle(page, "items like")
    assert page.inner_text("#results-title").startswith("More like")
    ids = page.locator("#results li.card").evaluate_all("cards => cards.map(c => c.dataset.id)")
    assert ids and str(heel["id"]) not in ids
    kinds = page.locator("#results dd[data-field=articleType]").all_inner_texts()
    assert kinds[:3].count("Heels") >= 2, kinds
    page.click("#back")
    expect(page.locator("#results-title")).to_have_text("Results")
    page.close()
    assert not problems, problems


def test_page_is_keyboard_usable_and_labelled(browser, server):
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector(".facet")
    assert page.get_attribute("html", "lang") == "en"
    assert page.locator("label[for=q]").count() == 1 and page.locator("label[for=file]").count() == 1
    page.keyboard.press("Tab")  # skip link first
    expect(page.locator(":focus")).to_have_class("skip")
    page.focus("#q")
    page.keyboard.type("watch")
    page.keyboard.press("Enter")
    settle(page, "results for")
    assert page.locator("#results li.card img[alt='']").count() == 0  # every thumbnail has a text alternative
    page.close()
