"""Browser fixtures: a Prefect server with its UI, headless Chromium, and screenshots kept by step.

The release runs on the local stack as the e2e tests' do: the `e2e` fixture and its helpers are
imported from tests/e2e, and `prefect_api` here replaces theirs with a server that serves the UI. The
browser is Debian's chromium (scripts/ensure-chromium.sh), driven by Playwright through its
executable_path, because Playwright's own browser download needs the internet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import prefect.context
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from prefect.settings import PREFECT_API_URL, temporary_settings

# The e2e package's fixtures, shared as they are: the stack's variables, a bucket, cleanup at the end.
from tests.e2e.conftest import _healthy, base_image, build_context, e2e
from tests.e2e.release_support import REPO_ROOT, flush_to_prefect, free_port

__all__ = ["base_image", "build_context", "e2e"]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / ".state" / "ui-screenshots"


@pytest.fixture(scope="package")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `prefect server start` with its UI, of its own (temporary home and database), for tests/ui."""
    home = tmp_path_factory.mktemp("prefect-ui-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        # The page calls the API at this address; the UI's own default guesses from the server's host.
        "PREFECT_UI_API_URL": url,
        # The server writes the UI bundle (with the API address in it) here, not into the venv.
        "PREFECT_UI_STATIC_DIRECTORY": str(home / "ui"),
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        # As in tests/e2e: threads that did not inherit this context read the process-global settings.
        with (
            temporary_settings(updates={PREFECT_API_URL: url}),
            prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()),
        ):
            yield url
    finally:
        flush_to_prefect()
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


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
