"""`huixiangdou-bot run` with DingTalk configured, in a subprocess, against the fake DingTalk
(served from a thread of this process): the wiring from bot.yaml to an answer that @-mentions
the asker, a clean shutdown, a kill -9 mid-answer answered exactly once after the restart, and
`doctor`'s credentials check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.app.cli import main
from tests.adapters.common import ThreadedFake, assert_stopped_cleanly, message_status
from tests.adapters.dingtalk.fake_dingtalk import FakeDingTalk
from tests.adapters.middlewares import CANNED_ANSWER
from tests.daemon import Daemon, daemon_config, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CANNED = [
    "normalize",
    "tests.adapters.middlewares:CannedAnswer",
    "tests.contracts.adapter:OneReference",
]


class ThreadedDingTalk(ThreadedFake[FakeDingTalk]):
    def deliver(self, data: dict[str, Any]) -> dict[str, Any]:
        """Push a robot message over the stream and return the client's ack."""
        ack: dict[str, Any] = self.call(self.fake.deliver(data, within=60), 65)
        return ack


@pytest.fixture
def threaded_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedDingTalk]:
    with ThreadedDingTalk(FakeDingTalk.fresh()) as threaded:
        monkeypatch.setenv("DINGTALK_CLIENT_SECRET", threaded.fake.client_secret)
        yield threaded


def dingtalk_section(fake: FakeDingTalk) -> dict[str, Any]:
    return {
        "client_id": fake.client_id,
        "client_secret": "${DINGTALK_CLIENT_SECRET}",
        "gateway_endpoint": fake.url,
        "openapi_endpoint": fake.url,
        "reconnect_initial_seconds": 0.1,
        "reconnect_max_seconds": 1,
    }


def test_daemon_answers_at_mentioning_the_asker_and_stops_cleanly(
    tmp_path: Path, threaded_fake: ThreadedDingTalk
) -> None:
    fake = threaded_fake.fake
    port = free_port()
    config = daemon_config(
        tmp_path,
        port,
        admin_token=True,
        pipeline=CANNED,
        adapters={"playground": {"enabled": False}, "dingtalk": dingtalk_section(fake)},
    )
    daemon = Daemon(config, port).start()
    try:
        threaded_fake.wait_for(lambda: fake.connected)
        question = fake.message()
        ack = threaded_fake.deliver(question)
        assert ack["code"] == 200
        threaded_fake.wait_for(lambda: len(fake.sent) == 1)
        [sent] = fake.sent
        assert sent.route == "session_webhook" and sent.at_user_ids == ["staff-alice"]
        assert sent.text.startswith(f"@staff-alice\n\n{CANNED_ANSWER}")
        assert "docs/get_started.md § Installation" in sent.text
    finally:
        daemon.stop()
    log = assert_stopped_cleanly(daemon)
    assert fake.client_secret not in log
    assert "session=" not in log  # a sessionWebhook's key stays out of the log
    assert not fake.connected


def test_kill_9_mid_answer_is_answered_exactly_once_after_the_restart(
    tmp_path: Path, threaded_fake: ThreadedDingTalk
) -> None:
    fake = threaded_fake.fake
    port = free_port()
    adapters = {"dingtalk": dingtalk_section(fake)}  # the playground shows the status
    hanging = daemon_config(
        tmp_path,
        port,
        admin_token=True,
        pipeline=["normalize", "tests.plugins:Sleep", *CANNED[1:]],
        middleware={"sleep": {"seconds": 600}},
        adapters=adapters,
    )
    first = Daemon(hanging, port).start()
    question = fake.message()
    try:
        threaded_fake.wait_for(lambda: fake.connected)
        assert threaded_fake.deliver(question)["code"] == 200
        wait_until(lambda: message_status(first, 1) == "processing", 30, "the message to start")
    finally:
        first.kill()
    threaded_fake.wait_for(lambda: not fake.connected)
    assert fake.sent == []

    second = Daemon(
        daemon_config(tmp_path, port, admin_token=True, pipeline=CANNED, adapters=adapters), port
    )
    second.start()
    try:
        threaded_fake.wait_for(lambda: len(fake.sent) == 1)
        # The gateway sending it again (its ack was lost with the process) changes nothing.
        threaded_fake.wait_for(lambda: fake.connected)
        again = threaded_fake.deliver(question)
        assert again["code"] == 200
        assert json.loads(again["data"]) == {"response": "duplicate"}
        assert message_status(second, 1) == "answered"
    finally:
        second.stop()
    assert len(fake.sent) == 1
    [sent] = fake.sent
    assert sent.route == "session_webhook" and sent.at_user_ids == ["staff-alice"]


@pytest.mark.parametrize("right_secret", [True, False])
def test_doctor_checks_the_dingtalk_credentials(
    tmp_path: Path, threaded_fake: ThreadedDingTalk, right_secret: bool
) -> None:
    fake = threaded_fake.fake
    section = dingtalk_section(fake)
    section["client_secret"] = fake.client_secret if right_secret else "wrong-secret"
    config = daemon_config(tmp_path, free_port(), adapters={"dingtalk": section})
    output = CliRunner().invoke(main, ["doctor", "--config", str(config)]).output
    if right_secret:
        found = f"ok    dingtalk: app {fake.client_id} has an access token from {fake.url}"
        assert found in output
    else:
        assert "FAIL  dingtalk" in output
        assert "code invalidClientSecret: 应用凭证不正确 (HTTP 400)" in output
        assert "DINGTALK_CLIENT_SECRET" in output
        assert "wrong-secret" not in output
