"""The web page end to end in headless Chromium (Debian's ``chromium``, driven by Playwright).

Type a query, upload a photo, read its tags, click "more like this", steer and filter, share
a search by its URL, go Back, and read the API documentation offline; check what the page
shows. Saves screenshots to ``build/screenshots/`` (``web.png``, ``empty.png``, ``shared.png``);
with ``VESTIS_UPDATE_SCREENSHOTS=1`` it refreshes the documentation's copies in
``docs/screenshots/`` on purpose (a test run never dirties the tree otherwise).
"""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from tests.conftest import chromium
from vestis.search import STEERS

from .conftest import REPO_ROOT

SCREENSHOTS = REPO_ROOT / ("docs" if os.environ.get("VESTIS_UPDATE_SCREENSHOTS") else "build") / "screenshots"
SCREENSHOT = SCREENSHOTS / "web.png"


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


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


#: Redoc's attribution logo: always asked for, hidden when it does not load (nothing else is).
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def watch(page) -> list[str]:
    """Collect page errors, console errors and any request that leaves the server (each is refused,
    as it would fail offline)."""
    problems: list[str] = []
    refused: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def console(m):
        if m.type == "error" and not (refused == [REDOC_LOGO] and m.text.startswith("Failed to load resource")):
            problems.append(f"console {m.type}: {m.text}")

    def offline(route):
        if route.request.url.startswith(("http://127.0.0.1", "data:", "blob:")):
            route.continue_()
            return
        refused.append(route.request.url)
        if route.request.url != REDOC_LOGO:
            problems.append(f"request outside the server: {route.request.url}")
        route.abort()

    page.on("console", console)

    page.route("**/*", offline)
    return problems


def facet_counts(page, field: str) -> dict[str, int]:
    labels = page.locator(f"fieldset.facet[data-field={field}] label")
    return {lab.locator("span").first.inner_text(): int(lab.locator(".count").inner_text()) for lab in labels.all()}


def test_the_empty_page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = watch(page)
    page.goto(server.url + "/")
    page.wait_for_selector(".facet legend:text-is('articleType')")
    # no photo chosen: no broken "Your photo" image, no "Remove photo" button
    expect(page.locator("#preview-box")).to_be_hidden()
    expect(page.locator("#preview")).to_be_hidden()
    expect(page.get_by_role("button", name="Remove photo")).to_be_hidden()
    # a button for every built-in steering direction
    chips = page.locator("#steer-buttons .chip").all_inner_texts()
    assert chips == list(STEERS) and {"with sleeves", "without sleeves"} <= set(chips)
    # facets people filter by, not image sizes
    legends = page.locator(".facet legend").all_inner_texts()
    assert "baseColour" in legends and not {"width", "height", "id", "productDisplayName"} & set(legends)
    assert "whole catalog" in page.inner_text("#facets-scope")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "empty.png"))
    page.close()
    assert not problems, problems


def test_the_search_lives_in_the_url(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems = watch(page)
    page.goto(server.url + "/")
    page.wait_for_selector(".facet legend:text-is('articleType')")
    whole = facet_counts(page, "articleType")

    # a shared link: query, steering and a facet selection come back from the URL
    page.goto(server.url + "/?q=shoes&steer=darker&filter=baseColour:Black")
    settle(page, "results for")
    assert page.input_value("#q") == "shoes"
    assert page.get_attribute(".chip:text-is('darker')", "aria-pressed") == "true"
    assert page.is_checked("input[data-field=baseColour][value=Black]")
    colours = page.locator("#results dd[data-field=baseColour]").all_inner_texts()
    assert colours and set(colours) == {"Black"}
    assert "steered darker" in page.inner_text("#status") and "1 filter" in page.inner_text("#status")
    # facet counts are the results', not the whole catalog's
    assert "best 200 results" in page.inner_text("#facets-scope")
    kinds = facet_counts(page, "articleType")
    assert kinds != whole and sum(kinds.values()) <= sum(whole.values())
    assert len(facet_counts(page, "baseColour")) > 1  # the selected field still offers its other values
    page.screenshot(path=str(SCREENSHOTS / "shared.png"))

    # a new search is a new URL; Back returns to the shared one, and reloading keeps it
    page.fill("#q", "watch")
    page.press("#q", "Enter")
    settle(page, "“watch”")
    assert "q=watch" in page.url and "filter=baseColour%3ABlack" in page.url
    page.go_back()
    settle(page, "“shoes”")
    assert page.input_value("#q") == "shoes" and "q=shoes" in page.url
    page.uncheck("input[data-field=baseColour][value=Black]")
    settle(page, "results for")
    assert "filter=" not in page.url
    page.reload()
    settle(page, "results for")
    assert page.input_value("#q") == "shoes" and "filter" not in page.inner_text("#status")
    # a filter written in the URL ignores case, as the API does
    page.goto(server.url + "/?q=shoes&where=baseColour+%3D+%27black%27")
    settle(page, "results for")
    assert set(page.locator("#results dd[data-field=baseColour]").all_inner_texts()) == {"Black"}
    page.close()
    assert not problems, problems


@pytest.mark.parametrize(("path", "rendered"), [("/docs", ".swagger-ui .opblock-summary-path"),
                                                ("/redoc", "h1:has-text('vestis')")])  # fmt: skip
def test_api_docs_work_offline(browser, server, path, rendered):
    page = browser.new_page()
    problems = watch(page)
    page.goto(server.url + path)
    page.wait_for_selector(rendered, timeout=30_000)
    assert "/v1/search" in page.inner_text("body")
    page.close()
    assert not problems, problems
