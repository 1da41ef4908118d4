"""Browser fixtures: a Prefect server with its UI, headless Chromium, and screenshots kept by step.

The release runs on the local stack as the e2e tests' do: the `e2e` fixture and its helpers are
imported from tests/e2e, and `prefect_api` here replaces theirs with a server that serves the UI. The
browser is Debian's chromium (scripts/ensure-chromium.sh), driven by Playwright through its
executable_path, because Playwright's own browser download needs the internet.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

# The e2e package's fixtures, shared as they are: the stack's variables, a bucket, cleanup at the end.
from tests.e2e.conftest import base_image, build_context, e2e
from tests.e2e.release_support import REPO_ROOT, prefect_server

__all__ = ["base_image", "build_context", "e2e"]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / ".state" / "ui-screenshots"


@pytest.fixture(scope="package")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `prefect server start` with its UI, of its own (temporary home and database), for tests/ui."""
    with prefect_server(tmp_path_factory.mktemp("prefect-ui-home"), ui=True) as url:
        yield url


@pytest.fixture(scope="package")
def ui_url(prefect_api: str) -> str:
    return prefect_api.removesuffix("/api")


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test runs it)")
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield found
        finally:
            found.close()


@pytest.fixture(scope="package")
def screenshots() -> Path:
    """.state/ui-screenshots/, emptied once per session: each file is a step of the last run."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    found = context.new_page()
    # The UI's first load (bundle, API calls) takes seconds on a busy machine; a step is allowed 30 s.
    found.set_default_timeout(30_000)
    try:
        yield found
    finally:
        context.close()
