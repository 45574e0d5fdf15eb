"""Fixtures for the tests that drive Debian's Chromium (``/usr/bin/chromium``) with Playwright.

Playwright's own browser builds are never used or downloaded. Without Chromium or the
``playwright`` package the tests are skipped, except when ``CI=true``, where they fail:
``.ci/install-browser`` installs both.
"""

import contextlib
import importlib.util
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# Keep the browser off the network: no proxy, no QUIC, no background or update traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"


def _missing_requirement():
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is not installed; run .ci/install-browser as root"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed; run .ci/install-browser"
    return None


@pytest.fixture(scope="session")
def live_server(django_db_setup, live_server):
    """Return pytest-django's live server, started only after the test database exists.

    The server thread shares the test's SQLite connection when the database is in memory. If it
    started first, it would take the connection to ``:memory:`` for shared, and a test database in
    a file (``PAT_TEST_SQLITE_NAME``) would then have request threads closing one connection that
    another thread is using, which crashes the interpreter.
    """
    return live_server


@pytest.fixture
def chromium(tmp_path):
    """Return a function that opens a page in a fresh headless Chromium, as a context manager.

    Playwright's synchronous API runs an asyncio event loop in the calling thread, and Django
    refuses ORM calls while one is running. Tests therefore prepare their data before
    ``with chromium() as page:`` and check the database after it.
    """
    reason = _missing_requirement()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run: {reason}")
        pytest.skip(reason)

    from playwright.sync_api import sync_playwright

    @contextlib.contextmanager
    def open_page():
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 800},
            )
            try:
                page = context.new_page()
                page.set_default_timeout(15_000)
                yield page
            finally:
                context.close()

    return open_page


@pytest.fixture
def screenshot():
    """Return a function that saves a full-page screenshot to ``artifacts/browser/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page, name):
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
