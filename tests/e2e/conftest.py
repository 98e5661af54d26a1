"""The end-to-end suite starts the local stack exactly as `make run` does (DynamoDB Local, not
moto; the simulator; the front door and invoke API) on free ports, and drives it over HTTP."""

import re
from collections.abc import Iterator

import pytest

from local.launch import Stack, start_stack, stop_stack
from tests.e2e.browser import CHROMIUM_FLAGS, DESKTOP, SCREENSHOTS, SHOP_ORIGIN, RecordedPage, chromium_path


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # Idle environments are kept for the whole suite: some tests read the workers the stack
    # started with, and the suite outlasts the default 300 s.
    running = start_stack(
        {
            "SESSION_EXPIRY_MINUTES": "7",
            "CHECKOUT_SHOP_ORIGINS": SHOP_ORIGIN,
            "LOCAL_LAMBDA_IDLE_SECONDS": "3600",
        }
    )
    yield running
    stop_stack(running)


# The browser tests' Chromium (one per module) and their pages, each screenshotted at the end.


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


@pytest.fixture
def open_page(chromium, request):
    """open_page(url, viewport=DESKTOP) -> RecordedPage; every page is screenshotted at the end."""
    contexts = []
    pages: list[RecordedPage] = []

    def open_(url, viewport=DESKTOP, **context_options):
        context = chromium.new_context(viewport=viewport, **context_options)
        contexts.append(context)
        page = RecordedPage.attach(context.new_page())
        pages.append(page)
        page.response = page.page.goto(url)
        return page

    yield open_
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    for index, page in enumerate(pages):
        suffix = f"-{index + 1}" if len(pages) > 1 else ""
        page.page.screenshot(path=SCREENSHOTS / f"{name}{suffix}.png", full_page=True)
    for context in contexts:
        context.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
