"""Browser tests of the admin: Playwright driving Debian's headless Chromium against ``live_server``.

Every test here is marked ``browser`` and is skipped, with the reason, when ``/usr/bin/chromium``
or the ``playwright`` package is missing (``make test-browser`` installs both). Playwright's own
browser downloads are never used: the tests launch the system Chromium.

Screenshots of every page a test visits land in ``artifacts/screenshots/`` (kept by CI).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHROMIUM = Path(os.environ.get("BROWSER_TESTS_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
# Generous for a 2-core CI machine that runs other work too; a passing test never waits this long.
TIMEOUT_MS = 30_000


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (make test-browser installs it)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium; make test-browser does it as root)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the admin in headless Chromium (Playwright)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = _missing()
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"browser tests: {missing}"))


# --- The browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def _async_unsafe_allowed() -> Iterator[None]:
    # Playwright's sync API keeps an asyncio loop registered as running in the test thread, and
    # Django then refuses ORM calls from that thread (SynchronousOnlyOperation). The test thread
    # only sets up and checks rows; the server threads are unaffected. Scoped to this package:
    # the browser (and its loop) is closed before any other test runs.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="package")
def browser(_async_unsafe_allowed: None) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def _insecure_cookies_for_the_live_server(settings: Any) -> None:
    # The live server speaks plain HTTP; with DEBUG off the session and CSRF cookies are Secure.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False


@dataclass
class Site:
    """The live server with the demo data, and one browser page per signed-in user."""

    url: str
    browser: Browser
    test_name: str
    users: dict[str, Any]
    pages: list[Page] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)

    def page(self) -> Page:
        context = self.browser.new_context(base_url=self.url, viewport={"width": 1440, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        self.pages.append(page)
        return page

    def login(self, username: str, *, expect_admin: bool = True) -> Page:
        """A fresh browser context signed in as a demo user (their published demo password)."""
        from cases.demo import DEMO_USERS

        password = next(user.password for user in DEMO_USERS if user.username == username)
        page = self.page()
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("#login-form [type=submit]")
        page.wait_for_load_state()
        if expect_admin:
            assert page.url.rstrip("/").endswith("/admin"), f"{username} did not reach the admin index: {page.url}"
        return page

    def shoot(self, page: Page, step: str) -> Path:
        """A full-page screenshot: artifacts/screenshots/<test>--<step>.png."""
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.test_name}--{step}").strip("-")
        path = SCREENSHOTS / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def close(self) -> None:
        for page in self.pages:
            page.context.close()


def load_demo_data(*, respiratory_cases: int) -> dict[str, Any]:
    """``load_demo``'s steps on a smaller cohort: the demo users, the synthetic respiratory cases
    imported by demo-clinician and reviewed by demo-reviewer, and the demo model types.

    The Breast Cancer Wisconsin cohort is left out: 569 more cases would only slow every test.
    """
    from django.contrib.auth.models import Group

    from cases import demo
    from cases.importing import import_objects
    from cases.signals import demo_loaded
    from learning_engine import roles

    if Group.objects.filter(name__in=roles.ROLES).count() != len(roles.ROLES):
        roles.sync_roles()  # a transactional test before this one flushed the groups
    users = demo.ensure_demo_users()
    import_objects(demo.respiratory_records(respiratory_cases), by=users[demo.SUBMITTER])
    demo.review_cases(reviewer=users[demo.REVIEWER])
    demo_loaded.send(sender=load_demo_data, users=users, verbosity=0)
    return users


@pytest.fixture
def demo_cases() -> int:
    """How many respiratory demo cases a test's site gets (override in a module that needs more)."""
    return 40


@pytest.fixture
def site(
    request: pytest.FixtureRequest,
    live_server: Any,
    browser: Browser,
    demo_cases: int,
    _insecure_cookies_for_the_live_server: None,
) -> Iterator[Site]:
    users = load_demo_data(respiratory_cases=demo_cases)
    site = Site(url=live_server.url, browser=browser, test_name=request.node.name, users=users)
    yield site
    site.close()
