"""`huixiangdou-bot run` with Feishu configured, in a subprocess, against the fake Feishu
(served from a thread of this process): the wiring from bot.yaml to a threaded reply, in
both modes, and a clean shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.adapters.common import ThreadedFake, assert_stopped_cleanly
from tests.adapters.feishu.conftest import ENCRYPT_KEY, VERIFICATION_TOKEN, feishu_section
from tests.adapters.feishu.fake_feishu import FakeFeishu, load_event, signed_request
from tests.adapters.middlewares import CANNED_PIPELINE
from tests.daemon import Daemon, daemon_config, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def threaded_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedFake[FakeFeishu]]:
    with ThreadedFake(FakeFeishu.fresh()) as threaded:
        monkeypatch.setenv("FEISHU_APP_SECRET", threaded.fake.app_secret)
        yield threaded


@pytest.mark.parametrize("mode", ["websocket", "webhook"])
def test_daemon_answers_in_a_thread_and_stops_cleanly(
    tmp_path: Path, threaded_fake: ThreadedFake[FakeFeishu], mode: str
) -> None:
    fake = threaded_fake.fake
    port = free_port()
    config = daemon_config(
        tmp_path,
        port,
        pipeline=CANNED_PIPELINE,
        adapters={"playground": {"enabled": False}, "feishu": feishu_section(fake, mode)},
    )
    daemon = Daemon(config, port).start()
    try:
        question = load_event("text_group.json", token=VERIFICATION_TOKEN, app_id=fake.app_id)
        if mode == "websocket":
            threaded_fake.wait_for(lambda: fake.connected)
            threaded_fake.call(fake.push_event(question))
        else:
            headers, body = signed_request(question, ENCRYPT_KEY)
            response = httpx.post(
                f"{daemon.url}/feishu/events", content=body, headers=headers, timeout=10
            )
            assert response.status_code == 200, response.text
        threaded_fake.wait_for(lambda: len(fake.sent) == 1)
        [sent] = fake.sent
        assert sent.target == question["event"]["message"]["message_id"]
        assert sent.reply_in_thread is True
        assert "docs/en/get_started.md § Installation" in sent.text()
    finally:
        daemon.stop()
    log = assert_stopped_cleanly(daemon)
    assert fake.app_secret not in log


@pytest.mark.parametrize("right_secret", [True, False])
def test_doctor_checks_the_feishu_credentials(
    tmp_path: Path, threaded_fake: ThreadedFake[FakeFeishu], right_secret: bool
) -> None:
    from click.testing import CliRunner

    from bot.app.cli import main

    fake = threaded_fake.fake
    config = daemon_config(
        tmp_path,
        free_port(),
        adapters={
            "feishu": {
                "app_id": fake.app_id,
                "app_secret": fake.app_secret if right_secret else "wrong-secret",
                "domain": fake.url,
            }
        },
    )
    output = CliRunner().invoke(main, ["doctor", "--config", str(config)]).output
    # The playground with a real platform and no admin token: locked, and doctor says so.
    assert "warn  admin pages" in output
    assert "a real platform adapter is enabled (feishu)" in output
    if right_secret:
        assert f"ok    feishu: bot 'HuixiangDou' at {fake.url} (websocket)" in output
    else:
        assert "FAIL  feishu" in output
        assert "10014: app secret invalid" in output
        assert "wrong-secret" not in output
