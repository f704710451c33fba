"""The queue dashboard in a real headless Chromium, signed in to the admin of a live daphne, with a
live worker: the numbers show, and they change on their own as work arrives and drains.

Same setup as the chat page's browser tests (Debian's Chromium driven by Playwright, database
calls from a helper thread); see tests/interface/test_chat_page_browser.py for why.
"""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect, sync_playwright

from apps.applications.models import ApiKey
from apps.conversations.services import Question, answer_submit
from apps.scheduling.models import Task, TaskStatus
from tests.factories import make_app, make_key
from tests.interface.test_chat_page_browser import CHROMIUM, CHROMIUM_ARGS, in_thread
from tests.processes import WebServer, run_worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DASHBOARD = "/admin/scheduling/task/dashboard/"
SCREENSHOT = Path("/tmp/dashboard.png")
# The page polls every 2 s: a change shows within one or two polls.
REFRESH_WAIT_MS = 6_000


@pytest.fixture(scope="module")
def live_worker(django_db_setup: None) -> Iterator[object]:
    """One worker with one slot: the test keeps it busy, and what comes next waits in a queue."""
    with run_worker(concurrency=1) as process:
        yield process


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def api_key(text: str, tokens_per_s: float = 0) -> ApiKey:
    config: dict[str, Any] = {"text": text}
    if tokens_per_s:
        config["tokens_per_s"] = tokens_per_s
    app = make_app(provider_config=config, max_tokens=80)
    key, _ = make_key(app)
    return ApiKey.objects.select_related("app").get(id=key.id)


def submit(key: ApiKey, priority: str) -> Task:
    return answer_submit(
        question=Question(
            api_key=key,
            route_mode="chat",
            end_user="u1",
            query="hi",
            inputs={},
            priority=priority,
            auto_generate_name=False,
        )
    ).task


def sign_in(page: Page, platform: WebServer) -> None:
    in_thread(lambda: User.objects.create_superuser("ops", password="ops-password"))
    page.goto(f"{platform.url}/admin/login/?next={DASHBOARD}")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops-password")
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{platform.url}{DASHBOARD}")


def test_the_dashboard_shows_live_numbers_and_refreshes_itself(
    live_web: WebServer, live_worker: object, page: Page
) -> None:
    in_thread(
        lambda: Task.objects.create(
            kind="noop", requested_priority="low", priority="low", status=TaskStatus.DEAD
        )
    )
    sign_in(page, live_web)
    expect(page.locator("h1")).to_have_text("Queue dashboard")
    for name in ("high", "medium", "low"):
        expect(page.locator(f"#queue-{name} .depth")).to_have_text("0")
    expect(page.locator("#dead-letters")).to_have_text("1")
    worker = page.locator("tr.worker")
    expect(worker).to_have_count(1)
    expect(worker.locator(".queues")).to_have_text("high, medium, low")
    expect(worker.locator(".cpu")).to_have_text(re.compile(r"^\d+ %$"))
    expect(page.locator("#load-state")).to_have_text("Normal")
    expect(page.locator("#load-since")).to_contain_text("is the scheduler running?")
    expect(page.locator("#dashboard-status")).to_contain_text("refreshes every 2 s")
    page.evaluate("window.notReloaded = true")

    # Keep the only worker busy, then queue work behind it: the depth must show without a reload.
    slow = in_thread(lambda: api_key("word " * 60, tokens_per_s=10))
    busy = in_thread(lambda: submit(slow, "medium"))
    expect(worker.locator(".current-task a")).to_have_text(str(busy.id), timeout=REFRESH_WAIT_MS)
    expect(worker.locator(".state")).to_have_text("busy")
    expect(worker.locator(".slots")).to_have_text("1 / 1", timeout=REFRESH_WAIT_MS)
    expect(page.locator("#slots-busy")).to_have_text("1")
    expect(page.locator("#queue-medium .running")).to_have_text("1")
    quick = in_thread(lambda: api_key("done"))
    waiting = in_thread(lambda: [submit(quick, "low") for _ in range(3)])
    expect(page.locator("#queue-low .depth")).to_have_text("3", timeout=REFRESH_WAIT_MS)
    expect(page.locator("#queue-low .oldest")).not_to_have_text("—")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # The current task links to its page in the admin.
    href = worker.locator(".current-task a").get_attribute("href")
    assert href == f"/admin/scheduling/task/{busy.id}/change/"

    # Once the worker is free the queue drains, and the finished work shows in the rates.
    expect(page.locator("#queue-low .depth")).to_have_text("0", timeout=20_000)
    expect(page.locator("#queue-low .rate-5m")).to_have_text("0.6", timeout=REFRESH_WAIT_MS)
    expect(page.locator("#queue-medium .run-p50")).to_have_text(
        re.compile(r"^\d+\.\d s$"), timeout=REFRESH_WAIT_MS
    )
    expect(worker.locator(".current-task")).to_have_text("—", timeout=REFRESH_WAIT_MS)
    assert page.evaluate("window.notReloaded") is True
    statuses = in_thread(
        lambda: set(
            Task.objects.filter(id__in=[busy.id, *(t.id for t in waiting)]).values_list(
                "status", flat=True
            )
        )
    )
    assert statuses == {TaskStatus.SUCCEEDED}


def test_the_dashboard_says_when_it_cannot_refresh(live_web: WebServer, page: Page) -> None:
    sign_in(page, live_web)
    expect(page.locator("#queue-high .depth")).to_have_text("0")

    page.context.clear_cookies()  # signed out elsewhere: the next poll is refused

    expect(page.locator("#dashboard-status")).to_have_text(
        re.compile(r"^Not updated: Sign in to the admin"), timeout=REFRESH_WAIT_MS
    )
    expect(page.locator("#dashboard-status")).to_have_class(re.compile("stale"))
