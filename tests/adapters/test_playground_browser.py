"""The playground page in a real browser (Debian's chromium, headless, driven by playwright)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon, daemon_config, free_port

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


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    port = free_port()
    running = Daemon(
        daemon_config(
            tmp_path,
            port,
            groups={"quiet": {"require_mention": True}},
        ),
        port,
    ).start()
    yield running
    running.stop()


def test_two_senders_chat_and_read_answer_and_trace(daemon: Daemon) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (make test does it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(daemon.url + "/")
            expect(page.locator("h1")).to_have_text("huixiangdou-bot playground")

            page.fill("#group", "quiet")
            page.fill("#sender", "alice")
            page.fill("#text", "good morning everyone")
            page.click("#send")
            page.fill("#sender", "bob")
            page.check("#mention")
            page.fill("#text", "What is a config file?")
            page.click("#send")

            items = page.locator(".item")
            expect(items).to_have_count(2)
            alice, bob = items.nth(0), items.nth(1)
            expect(alice.locator(".who").first).to_have_text("alice")
            expect(bob.locator(".who").first).to_have_text("bob")

            expect(alice.locator(".bot")).to_have_attribute(
                "data-status", "ignored", timeout=60_000
            )
            expect(alice.locator(".reply")).to_contain_text("stayed silent")
            expect(alice.locator("summary")).to_contain_text("ignored: not-mentioned")
            alice_step = alice.locator("tr.trace-step[data-step=normalize] .verdict")
            expect(alice_step).to_have_text("ignored: not-mentioned")

            expect(bob.locator(".bot")).to_have_attribute(
                "data-status", "answered", timeout=120_000
            )
            answer = bob.locator(".reply").inner_text()
            assert answer.strip() and "thinking" not in answer
            steps = bob.locator("tr.trace-step")
            expect(steps).to_have_count(3)
            assert [steps.nth(i).get_attribute("data-step") for i in range(3)] == [
                "normalize",
                "generate",
                "send",
            ]
            expect(bob.locator("tr.trace-step[data-step=generate] .verdict")).to_have_text("pass")
        finally:
            browser.close()
