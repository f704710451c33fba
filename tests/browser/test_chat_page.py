"""The chat page in a real headless Chromium against daphne and a worker as real processes.

Chromium comes from Debian (`apt-get install chromium`); Playwright drives it and downloads
nothing. Playwright's sync API keeps an event loop running in the test's thread, where Django
refuses database calls, so the tests use the database from a helper thread (`in_thread`) and
start Chromium per test, after the database is set up and gone before it is cleaned.
"""

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from django.db import connection
from playwright.sync_api import Browser, Page, WebSocketRoute, expect, sync_playwright

from apps.conversations.models import Message, MessageStatus
from tests.factories import make_app_with_key
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 60_000
WORDS = 40
T = TypeVar("T")


def in_thread(fn: Callable[[], T]) -> T:
    def run() -> T:
        try:
            return fn()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Chromium for one test: Playwright's loop must be gone before pytest-django cleans up."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
            "(`apt-get install chromium`)."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


@pytest.fixture
def slow_key() -> str:
    """A key of an app that answers `word0 ... word39` at 10 words a second."""
    text = " ".join(f"word{i}" for i in range(WORDS))
    return in_thread(
        lambda: make_app_with_key(
            provider="scripted",
            provider_config={"text": text, "tokens_per_s": 10},
            max_tokens=WORDS + 10,
        )[1]
    )


def sign_in(page: Page, platform: WebServer, key: str, user: str = "alice") -> None:
    page.goto(f"{platform.url}/chat/")
    expect(page.locator("#settings")).to_be_visible()
    page.fill("#api-key", key)
    page.fill("#user-name", user)
    page.click("#connect")
    expect(page.locator("#account-status")).to_have_text("Connected")
    expect(page.locator("#settings")).to_be_hidden()


def ask(page: Page, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


def last_answer(page: Page) -> Any:
    return page.locator(".turn").last.locator(".answer-text")


def message_of(query: str) -> Message:
    return in_thread(lambda: Message.objects.get(query=query))


def test_the_page_and_its_assets_are_served(platform: WebServer) -> None:
    page = httpx.get(f"{platform.url}/chat/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset, kind in (("chat.js", "javascript"), ("chat.css", "text/css")):
        response = httpx.get(f"{platform.url}/chat/static/{asset}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
    for bad in ("../../manage.py", "..%2F..%2Fmanage.py", "missing.js", "chat.py"):
        assert httpx.get(f"{platform.url}/chat/static/{bad}").status_code == 404


def test_ask_stream_stop_and_history(platform: WebServer, page: Page, slow_key: str) -> None:
    sign_in(page, platform, slow_key)

    ask(page, "First question")
    answer = last_answer(page)
    expect(answer).to_contain_text("word0")
    # The first words are on screen while the worker is still producing the rest.
    assert "word39" not in answer.inner_text()
    assert message_of("First question").status == MessageStatus.PENDING
    expect(page.locator("#send")).to_be_hidden()
    expect(page.locator("#stop")).to_be_visible()
    expect(page.locator(".turn.generating")).to_have_count(1)

    expect(page.locator(".turn.generating")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#send")).to_be_visible()
    first = message_of("First question")
    assert first.status == MessageStatus.NORMAL
    assert answer.inner_text() == first.answer.strip()
    assert first.answer.split()[-1] == "word39"

    ask(page, "Second question")
    expect(last_answer(page)).to_contain_text("word2")
    page.click("#stop")
    expect(page.locator(".turn.generating")).to_have_count(0)
    expect(page.locator(".turn").last.locator(".note")).to_have_text("Stopped")
    second = message_of("Second question")
    assert second.status == MessageStatus.STOPPED
    assert 3 <= len(second.answer.split()) < WORDS
    assert last_answer(page).inner_text() == second.answer.strip()
    assert second.conversation_id == first.conversation_id

    # The conversation is listed, and a reload shows its history from the server.
    expect(page.locator(".conversation")).to_have_count(1)
    expect(page).to_have_url(re.compile(f"#{first.conversation_id}$"))
    page.reload()
    expect(page.locator("#account-status")).to_have_text("Connected")
    turns = page.locator(".turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(0).locator(".question")).to_have_text("First question")
    expect(turns.nth(0).locator(".answer-text")).to_have_text(first.answer.strip())
    expect(turns.nth(1).locator(".answer-text")).to_have_text(second.answer.strip())
    expect(page.locator(".conversation[aria-current=true]")).to_have_count(1)

    # A new conversation starts empty and gets its own entry.
    page.click("#new-chat")
    expect(page.locator(".turn")).to_have_count(0)
    ask(page, "Third question")
    expect(page.locator(".turn.generating")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator(".conversation")).to_have_count(2)
    assert message_of("Third question").conversation_id != first.conversation_id


def test_dropped_socket_reconnects_and_resumes(
    platform: WebServer, page: Page, slow_key: str
) -> None:
    sockets: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket(re.compile(r"/ws/v1/chat$"), route)
    sign_in(page, platform, slow_key)
    ask(page, "Keep going")
    expect(last_answer(page)).to_contain_text("word3")
    sockets[0].close(code=4000, reason="dropped by the test")  # the page sees its socket die

    expect(page.locator(".turn.generating")).to_have_count(0, timeout=WAIT_MS)
    assert len(sockets) >= 2  # it connected again
    message = message_of("Keep going")
    assert message.status == MessageStatus.NORMAL
    # Every word once, in order: resumed after the last event seen, nothing repeated or lost.
    assert last_answer(page).inner_text().split() == [f"word{i}" for i in range(WORDS)]
    expect(page.locator(".turn .error")).to_have_count(0)


def test_a_refused_key_is_explained(platform: WebServer, page: Page) -> None:
    page.goto(f"{platform.url}/chat/")
    page.fill("#api-key", "app-not-a-real-key")
    page.fill("#user-name", "alice")
    page.click("#connect")
    expect(page.locator("#settings-error")).to_have_text("The key was refused.")
    expect(page.locator("#account-status")).to_have_text("Key refused")
    expect(page.locator("#send")).to_be_disabled()


def test_an_error_is_shown_inline(platform: WebServer, page: Page) -> None:
    key = in_thread(
        lambda: make_app_with_key(
            provider="scripted", provider_config={"permanent_error": "the model is unavailable"}
        )[1]
    )
    sign_in(page, platform, key)
    ask(page, "Hello?")
    error = page.locator(".turn").last.locator(".error")
    expect(error).to_be_visible()
    expect(error).not_to_be_empty()
    expect(page.locator("#send")).to_be_visible()
