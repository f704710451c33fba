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
from tests.factories import make_app
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


def web_chat(**fields: Any) -> str:
    """The share code of a new app with its web chat on."""
    return in_thread(lambda: make_app(web_chat_enabled=True, **fields).web_share_code)


@pytest.fixture
def slow_code() -> str:
    """The chat link code of an app that answers `word0 ... word39` at 10 words a second."""
    text = " ".join(f"word{i}" for i in range(WORDS))
    return web_chat(
        provider="scripted",
        provider_config={"text": text, "tokens_per_s": 10},
        max_tokens=WORDS + 10,
    )


def open_chat(page: Page, platform: WebServer, code: str) -> None:
    page.goto(f"{platform.url}/chat/{code}")
    expect(page.locator("#account-status")).to_have_text("Connected")


def ask(page: Page, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


def last_answer(page: Page) -> Any:
    return page.locator(".turn").last.locator(".answer-text")


def message_of(query: str) -> Message:
    return in_thread(lambda: Message.objects.get(query=query))


def test_the_page_and_its_assets_are_served(platform: WebServer) -> None:
    code = web_chat()
    page = httpx.get(f"{platform.url}/chat/{code}")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{platform.url}/chat/").status_code == 404
    for asset, kind in (("chat.js", "javascript"), ("chat.css", "text/css")):
        response = httpx.get(f"{platform.url}/chat/static/{asset}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
    for bad in ("../../manage.py", "..%2F..%2Fmanage.py", "missing.js", "chat.py"):
        assert httpx.get(f"{platform.url}/chat/static/{bad}").status_code == 404


def test_ask_stream_stop_and_history(platform: WebServer, page: Page, slow_code: str) -> None:
    open_chat(page, platform, slow_code)

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
    platform: WebServer, page: Page, slow_code: str
) -> None:
    sockets: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket(re.compile(r"/ws/v1/chat(\?|$)"), route)
    open_chat(page, platform, slow_code)
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


def test_an_unknown_or_rotated_link_is_explained(platform: WebServer, page: Page) -> None:
    page.goto(f"{platform.url}/chat/not-a-real-code")
    expect(page.locator("h1")).to_have_text("This chat is not available")


def test_a_second_browser_cannot_see_or_stop_the_firsts_conversations(
    platform: WebServer, browser: Browser, slow_code: str
) -> None:
    first = browser.new_context().new_page()
    second = browser.new_context().new_page()  # another browser: its own cookies
    for page in (first, second):
        page.set_default_timeout(WAIT_MS)
    open_chat(first, platform, slow_code)
    ask(first, "Only mine")
    expect(last_answer(first)).to_contain_text("word1")
    message = message_of("Only mine")

    # The second browser lists nothing, and opening the first's conversation shows nothing.
    open_chat(second, platform, slow_code)
    expect(second.locator(".conversation")).to_have_count(0)
    second.goto("about:blank")
    second.goto(f"{platform.url}/chat/{slow_code}#{message.conversation_id}")
    expect(second.locator("#account-status")).to_have_text("Connected")
    expect(second.locator("#notice")).to_be_visible()
    expect(second.locator(".turn")).to_have_count(0)
    # Its socket cannot stop the first's answer: a stop frame for that task changes nothing.
    second.evaluate(
        """(taskId) => new Promise((resolve) => {
            const code = document.body.dataset.shareCode;
            const ws = new WebSocket(`ws://${location.host}/ws/v1/chat?app_code=${code}`);
            ws.onmessage = (event) => {
                if (JSON.parse(event.data).type === "ready") {
                    ws.send(JSON.stringify({type: "stop", task_id: taskId, user: "x"}));
                    setTimeout(() => { ws.close(); resolve(); }, 300);
                }
            };
        })""",
        str(message.task_id),
    )
    expect(first.locator(".turn.generating")).to_have_count(0, timeout=WAIT_MS)
    finished = message_of("Only mine")
    assert finished.status == MessageStatus.NORMAL
    assert finished.answer.split()[-1] == f"word{WORDS - 1}"
    first.context.close()
    second.context.close()


def test_an_error_is_shown_inline(platform: WebServer, page: Page) -> None:
    code = web_chat(
        provider="scripted", provider_config={"permanent_error": "the model is unavailable"}
    )
    open_chat(page, platform, code)
    ask(page, "Hello?")
    error = page.locator(".turn").last.locator(".error")
    expect(error).to_be_visible()
    expect(error).not_to_be_empty()
    expect(page.locator("#send")).to_be_visible()
