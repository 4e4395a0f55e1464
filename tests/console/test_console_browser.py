"""The admin console in a real browser (Debian's chromium, headless, driven by playwright), over
a running daemon with the rejection gate, at a desktop (1280 px) and a phone (390 px) width.

Every page, with realistic data (long traces, long URLs, Chinese, code) and every <details>
opened, must fit the viewport's width; a screenshot of each is written to
test-artifacts/console/ (git-ignored) for a reviewer to look at.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from bot.app.console.auth import COOKIE, session_value
from bot.storage.db import Database
from tests.console.seed import GROUP, LONG_URL, TRACEBACK, realistic
from tests.daemon import REPO, Daemon, daemon_config, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without these, chromium tries to reach Google's services at start-up, which this network
# (and the test's network guard) refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "console"
WIDTHS = (1280, 390)
TOKEN = "console-test-token"
CHITCHAT = "哈哈哈 周末一起去吃火锅吧[旺柴]"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, indexed: Path) -> Iterator[Daemon]:
    """A daemon over the gate's small knowledge base, with the gate in the pipeline, a group
    that needs an @-mention, an admin token, and a Feishu conversation in its database."""
    root = tmp_path_factory.mktemp("console")
    shutil.copytree(indexed.parent, root, dirs_exist_ok=True)
    port = free_port()
    config = daemon_config(
        root,
        port,
        server={"host": "127.0.0.1", "port": port, "admin_token": TOKEN},
        pipeline=["normalize", "reject.embedding", "retrieve", "generate", "cite"],
        knowledge={"sources": [{"path": "corpus"}]},
        rejection={"good_questions": "good.json", "bad_questions": "bad.json"},
        groups={"quiet": {"require_mention": True, "topic": "MMFoo 训练与部署"}},
    )
    running = Daemon(config, port).start(timeout=300)
    database = Database(f"sqlite:///{root / 'work' / 'bot.db'}")
    realistic(database)
    database.dispose()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (make test does it)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def admin_page(browser: Any, daemon: Daemon, width: int = 1280) -> Any:
    """A page logged in as the admin (the cookie the login form sets)."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_cookies([{"name": COOKIE, "value": session_value(TOKEN), "url": daemon.url}])
    return context.new_page()


def fits(page: Any, name: str, width: int) -> None:
    """Open every <details>, check that nothing is wider than the viewport, take a picture."""
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    page.wait_for_load_state("load")
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    assert scroll <= inner, f"{name} at {width} px is {scroll} px wide"


def send(page: Any, text: str, sender: str = "alice", mention: bool = False) -> Any:
    """Type a message in the playground; the item it becomes, once decided."""
    count = page.locator("article.item").count()
    page.fill("#sender", sender)
    if mention:
        page.check("#mention")
    else:
        page.uncheck("#mention")
    page.fill("#text", text)
    page.click("#send")
    item = page.locator("article.item").nth(count)
    expect(item).to_have_attribute("data-final", "true", timeout=180_000)
    return item


def test_nothing_opens_without_the_token(browser: Any, daemon: Daemon) -> None:
    for path in (
        "/console/log",
        "/console/health",
        "/console/messages/1/item",
        "/api/gate/curve.png",
    ):
        assert httpx.get(daemon.url + path, timeout=10).status_code == 401
    assert httpx.post(f"{daemon.url}/console/teach", data={"message_id": "1"}).status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{daemon.url}/console/log", headers=bearer, timeout=10).status_code == 200

    for width in WIDTHS:
        page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
        page.goto(daemon.url + "/")
        expect(page.locator("#token")).to_be_visible()
        fits(page, "login", width)
        page.fill("#token", "not the token")
        page.click("#login")
        expect(page.locator(".error")).to_have_text("wrong token")
        page.fill("#token", TOKEN)
        page.click("#login")
        expect(page).to_have_url(daemon.url + "/console/")
        expect(page.locator("#composer")).to_be_visible()
        page.context.close()


def test_the_playground_chat_answers_stays_silent_and_says_why(
    browser: Any, daemon: Daemon
) -> None:
    page = admin_page(browser, daemon)
    page.goto(daemon.url + "/console/?group=quiet")
    expect(page.locator("h2")).to_have_text("Playground: quiet")
    alice = send(page, "good morning everyone", "alice")
    expect(alice.locator(".who").first).to_contain_text("alice")
    expect(alice.locator(".bot")).to_have_attribute("data-status", "ignored")
    expect(alice.locator(".reply")).to_have_text("stayed silent: not-mentioned")
    expect(alice.locator(".words")).to_contain_text(
        "silent: this group is answered only when the bot is @-mentioned"
    )
    expect(alice.locator("tr.trace-step[data-step=normalize] .verdict")).to_have_text(
        "ignored: not-mentioned"
    )

    bob = send(page, "How do I install MMFoo?", "bob", mention=True)
    expect(bob.locator(".bot")).to_have_attribute("data-status", "answered")
    answer = bob.locator(".reply").inner_text()
    assert answer.strip() and "thinking" not in answer
    steps = bob.locator("tr.trace-step")
    assert [steps.nth(i).get_attribute("data-step") for i in range(steps.count())] == [
        "normalize", "reject.embedding", "retrieve", "generate", "cite", "send",
    ]  # fmt: skip
    expect(bob.locator(".words")).to_contain_text("passed the gate: the gate gave")
    # Thumbs up on the answer is feedback for the gate; a reply to it says what it replies to.
    bob.locator("button.react[data-reaction=up]").click()
    expect(bob.locator("button.react[data-reaction=up]")).to_have_class(re.compile("done"))
    bob.locator("button.reply-to").click()
    expect(page.locator("#replying")).to_be_visible()
    thanks = send(page, "thanks, that worked", "bob")
    expect(page.locator("#replying")).to_be_hidden()
    # The playground's API sits behind the admin check like the pages (a script: the token).
    auth = {"Authorization": f"Bearer {TOKEN}"}
    thanks_id, bob_id = (
        thanks.get_attribute("data-message-id"),
        bob.get_attribute("data-message-id"),
    )
    view = httpx.get(f"{daemon.url}/api/messages/{thanks_id}", headers=auth).json()
    answer_view = httpx.get(f"{daemon.url}/api/messages/{bob_id}", headers=auth)
    assert view["reply_to"] == answer_view.json()["reply"]["platform_reply_id"]

    # The gate's silence, in words, in the main group.
    page.goto(daemon.url + "/console/")
    silent = send(page, CHITCHAT, "carol")
    expect(silent.locator(".reply")).to_have_text("stayed silent: off-topic")
    words = silent.locator(".words li").first
    expect(words).to_contain_text("silent: the gate gave")
    expect(words).to_contain_text("needs")
    expect(words).to_contain_text("it looked most like your bad examples")
    # The composer sits under the conversation, never over it.
    last = page.locator("article.item").last.bounding_box()
    composer = page.locator("#composer").bounding_box()
    assert composer["y"] >= last["y"] + last["height"]
    page.context.close()


def test_every_page_fits_a_desktop_and_a_phone(browser: Any, daemon: Daemon) -> None:
    setup = admin_page(browser, daemon)
    setup.goto(daemon.url + "/console/?group=playground")
    send(setup, TRACEBACK, "li.lei")
    send(setup, f"文档在这里 {LONG_URL} 看不懂", "王芳", mention=True)
    setup.goto(daemon.url + "/console/groups")
    group_link = setup.locator(f"tr[data-group='{GROUP}'] a").get_attribute("href")
    setup.goto(daemon.url + "/console/log?platform=feishu")
    conversation = setup.locator("a.entry").first.get_attribute("href")
    setup.context.close()
    pages = {
        "playground": "/console/?group=playground",
        "conversation": conversation,
        "log": "/console/log",
        "log-filtered": "/console/log?platform=feishu&status=ignored",
        "examples": "/console/examples",
        "groups": "/console/groups",
        "group": group_link,
        "health": "/console/health",
    }
    for width in WIDTHS:
        page = admin_page(browser, daemon, width)
        for name, path in pages.items():
            page.goto(daemon.url + str(path))
            fits(page, name, width)
        page.context.close()


def test_should_have_answered_changes_the_examples_and_after_confirm_the_gate(
    browser: Any, daemon: Daemon
) -> None:
    learned = daemon.config.parent / "work" / "knowledge" / "gate" / "learned"
    text = "下班了 晚上一起打球吗"
    page = admin_page(browser, daemon)
    page.goto(daemon.url + "/console/examples")
    expect(page.locator("#gate-good")).to_have_text("14")
    page.goto(daemon.url + "/console/?group=teach")
    item = send(page, text, "dave")
    expect(item.locator(".reply")).to_have_text("stayed silent: off-topic")
    item.locator("button[value=good]").click()
    expect(page.locator("#figures")).to_be_visible(timeout=180_000)
    expect(page.locator("#changes")).to_contain_text(f"add '{text}' to the good examples")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        fits(page, "teach", width)
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not learned.exists()  # shown, not applied
    page.click("#confirm")
    expect(page.locator("#applied")).to_contain_text(f"add '{text}' to the good examples")
    expect(page.locator("#learned [data-group=teach]")).to_contain_text("1 good, 0 bad")
    expect(page.locator("#gate-good")).to_have_text("15")  # the gate in use was refitted
    [taught] = [json.loads(f.read_text(encoding="utf-8")) for f in learned.glob("*.json")]
    assert taught["good"] == [text]
    page.context.close()


def test_the_log_filters(browser: Any, daemon: Daemon) -> None:
    page = admin_page(browser, daemon)
    page.goto(daemon.url + "/console/log")
    entries = page.locator("a.entry")
    assert entries.count() >= 5

    def all_have(attribute: str, value: str) -> None:
        expect(entries.first).to_be_visible()
        found = {entries.nth(i).get_attribute(attribute) for i in range(entries.count())}
        assert found == {value}, found

    page.select_option("#status", "ignored")
    page.click("#apply")
    all_have("data-status", "ignored")
    page.select_option("#platform", "feishu")
    page.click("#apply")
    all_have("data-platform", "feishu")
    all_have("data-status", "ignored")
    page.select_option("#status", "")
    page.fill("#reason", "off-topic")
    page.click("#apply")
    all_have("data-reason", "off-topic")
    all_have("data-group", GROUP)
    page.goto(daemon.url + "/console/log")
    page.fill("#group", "quiet")
    page.click("#apply")
    all_have("data-group", "quiet")
    page.fill("#since", "2030-01-01")
    page.click("#apply")
    expect(page.locator("#none")).to_have_text("No messages match.")
    # Each entry opens its chat view, at the message.
    page.goto(daemon.url + "/console/log?platform=feishu")
    entry = entries.first
    message_id = entry.get_attribute("data-message-id")
    entry.click()
    expect(page.locator(f"#m{message_id}")).to_be_visible()
    page.context.close()
