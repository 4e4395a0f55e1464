"""`huixiangdou-bot run` and `doctor` with WeCom configured, in a subprocess, against the fake
WeCom (served from a thread of this process): killed with SIGKILL while answering, the daemon
answers exactly once after a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from bot.app.cli import main
from tests.adapters.common import ThreadedFake, message_status
from tests.adapters.middlewares import CANNED_PIPELINE
from tests.adapters.wecom.conftest import USER, make_fake, wecom_section
from tests.adapters.wecom.fake_wecom import (
    FakeWeCom,
    Keys,
    app_callback,
    msg_id,
    text_xml,
    url_check,
)
from tests.daemon import Daemon, daemon_config, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class ThreadedWeCom(ThreadedFake[FakeWeCom]):
    def __init__(self) -> None:
        fake, self.app_keys, self.bot_keys, self.robot_key = make_fake()
        super().__init__(fake)

    def section(self) -> dict[str, Any]:
        return wecom_section(self.fake, self.app_keys, self.bot_keys, self.robot_key)


@pytest.fixture
def threaded_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedWeCom]:
    with ThreadedWeCom() as threaded:
        monkeypatch.setenv("WECOM_DOCS_SECRET", threaded.fake.secret)
        yield threaded


def post_callback(daemon: Daemon, keys: Keys, xml: str) -> httpx.Response:
    query, body = app_callback(keys, xml)
    return httpx.post(f"{daemon.url}/wecom/docs", params=query, content=body, timeout=10)


def test_killed_mid_answer_the_daemon_answers_exactly_once_after_restart(
    tmp_path: Path, threaded_fake: ThreadedWeCom
) -> None:
    fake: FakeWeCom = threaded_fake.fake
    port = free_port()
    adapters = {"wecom": threaded_fake.section()}
    hanging = daemon_config(
        tmp_path,
        port,
        admin_token=True,
        pipeline=["normalize", "tests.plugins:Sleep", *CANNED_PIPELINE[1:]],
        middleware={"sleep": {"seconds": 600}},
        adapters=adapters,
    )
    xml = text_xml(fake.corp_id, USER, "怎么安装 mmdet？", msg_id())
    first = Daemon(hanging, port).start()
    try:
        # The URL check the console makes when the admin saves the callback URL.
        check = url_check(threaded_fake.app_keys, "echo-123")
        echoed = httpx.get(f"{first.url}/wecom/docs", params=check, timeout=10)
        assert (echoed.status_code, echoed.text) == (200, "echo-123")
        assert post_callback(first, threaded_fake.app_keys, xml).status_code == 200
        wait_until(lambda: message_status(first, 1) == "processing")
    finally:
        first.kill()

    restarted = daemon_config(
        tmp_path, port, admin_token=True, pipeline=CANNED_PIPELINE, adapters=adapters
    )
    second = Daemon(restarted, port).start()
    try:
        # WeCom may well deliver the callback again meanwhile: still one message, one answer.
        assert post_callback(second, threaded_fake.app_keys, xml).status_code == 200
        wait_until(lambda: message_status(second, 1) == "answered")
        assert message_status(second, 2) == ""  # no second message
    finally:
        second.stop()
    assert len(fake.sent) == 1
    [sent] = fake.sent
    assert (sent.kind, sent.target) == ("message", USER)
    assert "Use mim to install mmcv" in sent.content
    log = second.log.read_text()
    assert "Traceback" not in log, log
    for secret in (
        fake.secret,
        threaded_fake.app_keys.token,
        threaded_fake.app_keys.encoding_aes_key,
    ):
        assert secret not in first.log.read_text() + log


@pytest.mark.parametrize("right_secret", [True, False])
def test_doctor_checks_the_credentials_and_callbacks(
    tmp_path: Path, threaded_fake: ThreadedWeCom, right_secret: bool
) -> None:
    fake = threaded_fake.fake
    section = threaded_fake.section()
    if not right_secret:
        section["apps"][0]["secret"] = "wrong-secret-123"
    config = daemon_config(tmp_path, free_port(), adapters={"wecom": section})
    output = CliRunner().invoke(main, ["doctor", "--config", str(config)]).output
    if right_secret:
        assert (
            f"ok    wecom app docs: access token for corp {fake.corp_id}, agent 1000002 at "
            f"{fake.url}; callback path /wecom/docs, Token of 32 characters, EncodingAESKey "
            "of 43 characters" in output
        ), output
    else:
        assert "FAIL  wecom app docs" in output, output
        assert "errcode 40001" in output and "app secret is wrong" in output
        assert "wrong-secret-123" not in output
    assert "ok    wecom AI bot helper: callback path /wecom/helper" in output
    assert "wecom group robot for wrkSFfCgAAtestchat0001" in output
    assert fake.secret not in output and threaded_fake.robot_key not in output


def test_doctor_names_a_bad_encoding_aes_key(tmp_path: Path, threaded_fake: ThreadedWeCom) -> None:
    section = threaded_fake.section()
    section["bots"][0]["encoding_aes_key"] = "tooshort"
    config = daemon_config(tmp_path, free_port(), adapters={"wecom": section})
    output = CliRunner().invoke(main, ["doctor", "--config", str(config)]).output
    assert "FAIL  adapters" in output, output
    assert "adapters.wecom.bots[0]" in output
    assert "encoding_aes_key: expected the 43" in output and "got 8 characters" in output
    assert "tooshort" not in output
