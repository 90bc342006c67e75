"""The operator UI end to end: headless Debian Chromium (Playwright's Python API, no browser download)
on the real proxy in front of the session's llama-server and default model, with ``--api-key`` set.

Each view is used as an operator would (the key prompt first, then status, a streamed chat, a tool call
shown as a card with what was sent to llama-server, a thread opened and deleted, a schema's grammar and
samples) and saved as a screenshot in docs/ui/ (the README shows them).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests._processes import REPO, ProxyProcess
from tests.api.conftest import http

CHROMIUM = "/usr/bin/chromium"
KEY = "sk-ui-browser-4e1f"
SHOTS = REPO / "docs" / "ui"
WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                             "parameters": {"type": "object", "properties": {
                                                 "city": {"type": "string", "maxLength": 30}},
                                                 "required": ["city"]}}}]


@pytest.fixture(scope="module")
def ui_proxy(upstream: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    db = tmp_path_factory.mktemp("ui") / "ui.db"
    p = ProxyProcess(["--endpoint", upstream.url, "--api-key", KEY, "--default-max-tokens", "48",
                      "--db-url", f"sqlite+aiosqlite:///{db}"])
    yield p
    p.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make setup` (it installs Debian's chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == [], errors  # no script error on the page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def signed_in(page: Page, proxy: ProxyProcess, view: str = "status") -> Page:
    page.goto(proxy.url + "/ui")
    page.get_by_label("API key", exact=True).fill(KEY)
    page.get_by_role("button", name="Use this key").click()
    page.get_by_role("link", name={"status": "Status", "playground": "Playground", "threads": "Threads",
                                   "grammar": "Grammar lab"}[view]).click()
    expect(page.locator(f"#view-{view}")).to_be_visible()
    return page


def test_the_page_asks_for_the_key_and_shows_nothing_without_it(ui_proxy: ProxyProcess, page: Page) -> None:
    status, _, body = http("GET", ui_proxy.url + "/ui/api/status")
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    page.goto(ui_proxy.url + "/")  # redirected to /ui
    assert page.url.endswith("/ui")
    expect(page.get_by_role("heading", name="API key needed")).to_be_visible()
    expect(page.locator("#view-status")).to_be_hidden()
    shot(page, "key")
    page.get_by_label("API key", exact=True).fill("sk-wrong")
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#key-error")).to_contain_text("401")
    expect(page.locator("#view-status")).to_be_hidden()
    page.get_by_label("API key", exact=True).fill(KEY)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#view-status")).to_be_visible()
    expect(page.get_by_role("article", name="Model")).to_contain_text("gemma")
    # the key stays in this browser: a reload goes straight to the status
    page.reload()
    expect(page.locator("#view-status")).to_be_visible()
    expect(page.get_by_role("heading", name="API key needed")).to_be_hidden()


def test_status_shows_model_dialect_llama_server_and_queue(ui_proxy: ProxyProcess, page: Page) -> None:
    signed_in(page, ui_proxy)
    health = json.loads(http("GET", ui_proxy.url + "/health")[2])
    expect(page.get_by_role("article", name="Model")).to_contain_text(health["model"])
    dialect = page.get_by_role("article", name="Dialect")
    expect(dialect).to_contain_text(health["style"])
    expect(dialect).to_contain_text("detected from the chat template")
    expect(page.get_by_role("article", name="llama-server")).to_contain_text("ready")
    expect(page.get_by_role("article", name="llama-server")).to_contain_text("--endpoint")
    expect(page.get_by_role("article", name="Queue")).to_contain_text("0 of")
    expect(page.get_by_role("article", name="Tool sources")).to_contain_text("No --tools file")
    shot(page, "status")


def test_a_streamed_chat_and_what_was_sent(ui_proxy: ProxyProcess, page: Page) -> None:
    signed_in(page, ui_proxy, "playground")
    page.get_by_label("max_tokens", exact=True).fill("40")
    # count the updates of the answer's text: a streamed answer arrives in pieces
    page.evaluate("""() => { window.__pieces = 0; new MutationObserver((records) => {
        for (const r of records) if (r.target.classList && r.target.classList.contains('content')) window.__pieces++;
    }).observe(document.querySelector('#transcript'), {childList: true, subtree: true}); }""")
    page.get_by_label("Message", exact=True).fill("Once upon a time, a cat")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".meta").last).to_contain_text("finish:", timeout=120_000)
    content = answer.locator(".content").inner_text()
    assert content.strip(), "no answer text"
    assert page.evaluate("window.__pieces") > 1, "the answer did not stream"
    details = answer.locator("details.inspect")
    details.locator("summary").click()
    prompt = details.locator("h5:text-is('Prompt as rendered') + pre").first.inner_text()
    raw = details.locator("h5:text-is('Raw model text') + pre").first.inner_text()
    assert "Once upon a time, a cat" in prompt
    assert content.strip() in raw
    expect(details).to_contain_text("Grammar (GBNF)")
    shot(page, "playground-chat")


def test_a_tool_call_is_a_card_with_its_grammar_and_triggers(ui_proxy: ProxyProcess, page: Page) -> None:
    signed_in(page, ui_proxy, "playground")
    page.get_by_text("System prompt, tools and output schema").click()
    page.get_by_label("Tools (an OpenAI tools list, JSON)").fill(json.dumps(WEATHER, indent=1))
    page.get_by_label("Tools (an OpenAI tools list, JSON)").blur()
    page.get_by_label("tool_choice").select_option("function:get_weather")
    page.get_by_label("max_tokens", exact=True).fill("64")
    page.get_by_label("Message", exact=True).fill("What is the weather in Paris?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".meta").last).to_contain_text("finish: tool_calls", timeout=120_000)
    card = answer.get_by_role("article", name="Tool call get_weather")
    expect(card).to_be_visible()
    args = json.loads(card.locator("pre.args").inner_text())
    assert set(args) == {"city"} and isinstance(args["city"], str)
    details = answer.locator("details.inspect")
    details.locator("summary").click()
    grammar = details.locator("h5:text-matches('^Grammar') + pre").first.inner_text()
    assert "get_weather" in grammar and "::=" in grammar
    assert details.locator("h5:text-is('Raw model text') + pre").first.inner_text().strip()
    shot(page, "playground-tool-call")


def test_a_thread_opened_read_and_deleted(ui_proxy: ProxyProcess, page: Page) -> None:
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "text/plain"}
    for name in ("ann-chat", "bob-notes"):
        req = urllib.request.Request(f"{ui_proxy.url}/{name}?user={name[:3]}", data=b"Hello, who are you?",
                                     headers=auth, method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            assert resp.status == 200
    signed_in(page, ui_proxy, "threads")
    row = page.get_by_role("row", name="ann-chat")
    expect(row.locator("td").first).to_have_text("2")  # the question and the answer
    row.get_by_role("button", name="Open thread ann-chat").click()
    detail = page.locator("#thread-detail")
    expect(detail.get_by_role("heading", name="Thread ann-chat")).to_be_visible()
    messages = detail.locator("#thread-messages > li")
    expect(messages).to_have_count(2)
    expect(messages.first).to_contain_text("Hello, who are you?")
    expect(messages.first).to_contain_text("ann")
    expect(messages.last).to_contain_text("assistant")
    expect(messages.last).to_contain_text("out")  # its token counts
    shot(page, "threads")
    page.once("dialog", lambda dialog: dialog.accept())
    detail.get_by_role("button", name="Delete thread").click()
    expect(page.get_by_role("row", name="ann-chat")).to_have_count(0)
    expect(page.get_by_role("row", name="bob-notes")).to_have_count(1)
    expect(detail).to_be_hidden()
    status, _, _ = http("GET", ui_proxy.url + "/ann-chat", headers={"Authorization": f"Bearer {KEY}"})
    assert status == 404  # gone from the store, not just from the page


def test_a_schema_its_grammar_and_samples(ui_proxy: ProxyProcess, page: Page) -> None:
    signed_in(page, ui_proxy, "grammar")
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["name", "age"], "additionalProperties": False}
    page.get_by_label("JSON Schema", exact=True).fill(json.dumps(schema, indent=2))
    page.get_by_role("button", name="Convert to GBNF").click()
    expect(page.get_by_label("GBNF")).to_contain_text("root ::=")
    page.get_by_label("Samples", exact=True).fill("2")
    page.get_by_role("button", name="Sample from the model").click()
    samples = page.locator("#samples > li.sample")
    expect(samples).to_have_count(2, timeout=120_000)
    for i in range(2):
        expect(samples.nth(i).locator(".badge")).to_have_text("valid")
        value = json.loads(samples.nth(i).locator("pre").inner_text())
        assert set(value) == {"name", "age"} and 0 <= value["age"] <= 120
    shot(page, "grammar")
    page.get_by_label("JSON Schema", exact=True).fill('{"type": "object", "properties": {"a": {"type": "strnig"}}}')
    page.get_by_role("button", name="Convert to GBNF").click()
    expect(page.locator("#grammar-error")).to_contain_text("400")
    expect(page.locator("#grammar-error")).to_contain_text("(schema)")


def test_labels_and_a_phone_width(ui_proxy: ProxyProcess, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        signed_in(page, ui_proxy, "playground")
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
            .filter((e) => e.labels.length === 0 && !e.getAttribute('aria-label')).map((e) => e.id)""")
        assert unlabelled == []
        for view in ("status", "playground", "threads", "grammar"):
            page.goto(f"{ui_proxy.url}/ui#{view}")
            expect(page.locator(f"#view-{view}")).to_be_visible()
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{view}: {width} px wide on a 390 px screen"
        page.goto(f"{ui_proxy.url}/ui#playground")
        expect(page.locator("#view-playground")).to_be_visible()
        shot(page, "phone")
    finally:
        context.close()
