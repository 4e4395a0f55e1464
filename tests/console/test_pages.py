"""The console in-process: who gets in, what each page shows of stored messages, the log's
filters over HTTP, the gate curve, and the scheduled jobs' last runs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from starlette.testclient import TestClient

from bot.adapter import build_adapters
from bot.app.jobs import Jobs
from bot.app.server import create_app
from bot.app.services import build_services
from bot.config import load_config
from bot.runtime import Bot
from bot.storage.db import Database
from knowledge.rejection.curve import draw_pr_curve
from knowledge.rejection.files import CURVE_FILE, gate_dir
from knowledge.rejection.model import fit_gate
from tests.conftest import write_config
from tests.console.seed import GROUP, realistic
from tests.fakes import ScriptedChatModel

pytestmark = pytest.mark.unit

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOOPBACK = ("127.0.0.1", 50000)


def make_bot(tmp_path: Path, **sections: Any) -> Bot:
    data: dict[str, Any] = {
        "bot": {"work_dir": str(tmp_path / "work")},
        "queue": {"debounce_seconds": 0},
        "pipeline": ["normalize", "gate", "generate"],
        "groups": {
            "quiet": {
                "require_mention": True,
                "topic": "MMFoo 训练与部署",
                "non_answer": "在呢",
                "middleware": {"gate": {"budget": {"per_hour": 5}}},
            }
        },
        **sections,
    }
    config = load_config(write_config(tmp_path, data))
    database = Database(config.database_url)
    database.upgrade()
    services = build_services(config, llm=ScriptedChatModel("pip install mmfoo [1]"))
    return Bot(services, database, build_adapters(config))


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[TestClient, Bot]]:
    bot = make_bot(tmp_path, server={"admin_token": TOKEN})
    with TestClient(create_app(bot, Jobs(bot.services)), headers=AUTH) as client:
        yield client, bot
    bot.db.dispose()


def test_without_a_token_only_this_machine_gets_in(tmp_path: Path) -> None:
    bot = make_bot(tmp_path)
    app = create_app(bot)
    with TestClient(app, client=LOOPBACK) as local:
        assert local.get("/console/log").status_code == 200
        assert local.get("/").url.path == "/console/"
    with TestClient(app, client=("203.0.113.9", 50000)) as remote:
        refused = remote.get("/console/log")
        assert refused.status_code == 403 and "server.admin_token" in refused.text
        assert remote.get("/api/gate/curve.png").status_code == 403
        assert remote.post("/console/teach", data={"message_id": "1"}).status_code == 403
    bot.db.dispose()


def test_with_a_token_nothing_opens_without_it(tmp_path: Path) -> None:
    bot = make_bot(tmp_path, server={"admin_token": TOKEN})
    with TestClient(create_app(bot), client=LOOPBACK) as anonymous:
        assert anonymous.get("/console/log").status_code == 401
        assert anonymous.get("/console/messages/1/item").status_code == 401
        assert anonymous.post("/console/teach", data={"message_id": "1"}).status_code == 401
        page = anonymous.get("/console/health", headers={"Accept": "text/html"})
        assert page.url.path == "/console/login" and 'name="token"' in page.text
        wrong = anonymous.post("/console/login", data={"token": "guess", "next": "/console/log"})
        assert wrong.status_code == 401 and "wrong token" in wrong.text
        assert anonymous.get("/console/log").status_code == 401
        bearer = anonymous.get("/console/log", headers={"Authorization": "Bearer guess"})
        assert bearer.status_code == 401

        logged_in = anonymous.post("/console/login", data={"token": TOKEN, "next": "/console/log"})
        assert logged_in.status_code == 200 and logged_in.url.path == "/console/log"
        assert TOKEN not in str(anonymous.cookies.get("hxd_console"))
        assert anonymous.get("/console/health").status_code == 200
        # A form posted from another site is refused even with the admin's cookie.
        forged = anonymous.post(
            "/console/teach", data={"message_id": "1"}, headers={"Origin": "https://evil.example"}
        )
        assert forged.status_code == 403
        elsewhere = anonymous.post(
            "/console/login", data={"token": TOKEN, "next": "//evil.example"}
        )
        assert elsewhere.url.path == "/console/"
    bot.db.dispose()


def test_the_playground_chat_shows_answers_and_silence_in_words(
    running: tuple[TestClient, Bot],
) -> None:
    client, _ = running
    answered = client.post(
        "/api/messages", json={"text": "How do I install MMFoo?", "sender": "bob", "wait": True}
    ).json()
    silent = client.post(
        "/api/messages",
        json={"text": "good morning", "sender": "alice", "conversation_id": "quiet", "wait": True},
    ).json()
    page = client.get("/console/").text
    assert "pip install mmfoo" in page and 'id="composer"' in page
    assert f'data-message-id="{answered["id"]}"' in page
    quiet = client.get("/console/?group=quiet").text
    assert "stayed silent: not-mentioned" in quiet
    assert "silent: this group is answered only when the bot is @-mentioned" in quiet
    item = client.get(f"/console/messages/{silent['id']}/item").text
    assert item.startswith("<article") and 'data-final="true"' in item
    opened = client.get(f"/console/messages/{silent['id']}")
    assert opened.url.path.startswith("/console/conversations/") and f'id="m{silent["id"]}"' in (
        opened.text
    )


def test_a_stored_feishu_conversation_reads_in_words(running: tuple[TestClient, Bot]) -> None:
    client, bot = running
    ids = realistic(bot.db)
    page = client.get(f"/console/messages/{ids['chitchat']}").text
    assert "silent: the gate gave 0.03, needs 0.49" in page
    assert "it looked most like your bad examples (&#39;早上好[旺柴] 今天也要加油哦&#39;)" in page
    assert "little like the documentation" in page
    assert "Pushed toward silence" in page and "raw trace (JSON)" in page
    assert "answered in" in page  # the question in the same conversation
    assert "silent: nothing in the knowledge base was close enough to answer from" in page
    assert "(scored 0.08, needs 0.15)" in page
    assert "failed in generate: TimeoutError" in page
    assert 'href="https://mmdetection.readthedocs.io/zh-cn/latest/user_guides/train.html' in page
    assert 'id="composer"' not in page  # Feishu is read here, not written to


def test_the_log_filters_and_pages(running: tuple[TestClient, Bot]) -> None:
    client, bot = running
    realistic(bot.db)
    for text in ["How do I install?", "hello", "lol"]:
        client.post("/api/messages", json={"text": text, "conversation_id": "quiet", "wait": True})

    def rows(query: str) -> list[dict[str, str]]:
        html = client.get(f"/console/log?{query}").text
        return [
            dict(re.findall(r'data-([a-z-]+)="([^"]*)"', match))
            for match in re.findall(r'<a class="entry"([^>]*)>', html)
        ]

    assert len(rows("")) == 7
    assert {r["platform"] for r in rows("platform=feishu")} == {"feishu"}
    assert len(rows("platform=feishu")) == 4
    assert {r["group"] for r in rows("group=quiet")} == {"quiet"}
    assert {r["status"] for r in rows("status=ignored")} == {"ignored"}
    assert [r["reason"] for r in rows("reason=not-mentioned")] == ["not-mentioned"] * 3
    assert len(rows("reason=off-topic&platform=feishu")) == 1
    assert rows("since=2001-01-01&until=2001-01-02") == []
    today = datetime.now(UTC).date().isoformat()
    assert len(rows(f"since={today}&until={today}")) == 7
    first = client.get("/console/log?platform=feishu&before=99999")
    assert first.status_code == 200


def test_groups_health_and_the_gate_curve(running: tuple[TestClient, Bot]) -> None:
    client, bot = running
    realistic(bot.db)
    client.post("/api/messages", json={"text": "hi", "conversation_id": "quiet", "wait": True})
    groups = client.get("/console/groups").text
    assert GROUP in groups
    group_id = re.search(rf'href="/console/groups/(\d+)">{GROUP}<', groups)
    assert group_id
    page = client.get(f"/console/groups/{group_id.group(1)}").text
    assert "<svg" in page and "off-topic" in page and "no-knowledge" in page
    assert "Bot messages in the last hour: 1 of 20 allowed" in page  # the seeded answer
    quiet = re.search(r'href="/console/groups/(\d+)">quiet<', groups)
    assert quiet  # a playground group with settings of its own in bot.yaml
    settings = client.get(f"/console/groups/{quiet.group(1)}").text
    assert "MMFoo 训练与部署" in settings and "normalize → gate → generate" in settings
    assert "<dt>non_answer</dt>" in settings and "在呢" in settings
    # The gate middleware's settings as the group's override resolves them.
    assert "of 5 allowed" in settings and "overridden for this group" in settings
    assert "<dt>budget.per_hour</dt><dd>5</dd>" in settings

    health = client.get("/console/health").text
    assert 'data-adapter="playground"' in health and "scripted" in health
    assert "revision 0003" in health

    missing = client.get("/api/gate/curve.png")
    assert missing.status_code == 404 and "huixiangdou-bot calibrate" in missing.json()["error"]
    rng = np.random.default_rng(0)
    labels = np.array([1] * 20 + [0] * 30)
    base = np.column_stack([rng.normal(labels, 0.7), rng.normal(size=50)])
    emb = rng.normal(size=(50, 4)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    draw_pr_curve(
        fit_gate(base, emb, labels, ["kb_dense_max", "noise"]),
        gate_dir(bot.config.work_dir) / CURVE_FILE,
    )
    found = client.get("/api/gate/curve.png")
    assert found.headers["content-type"] == "image/png"
    assert found.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'href="/api/gate/curve.png"' in client.get("/console/").text


async def test_each_jobs_last_run_is_kept(tmp_path: Path) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "install.md").write_text("# Install\n\npip install mmfoo\n", encoding="utf-8")
    config = load_config(
        write_config(
            tmp_path,
            {
                "bot": {"work_dir": str(tmp_path / "work")},
                "knowledge": {"sources": [{"path": "docs"}], "reindex": {"interval_minutes": 60}},
            },
        )
    )
    services = build_services(config, llm=ScriptedChatModel())
    jobs = Jobs(services)
    jobs.start()
    try:
        assert jobs.scheduler is not None
        [status] = jobs.status()
        assert status.id == "knowledge-reindex" and status.last is None
        done = asyncio.Event()
        jobs.scheduler.add_listener(lambda event: done.set(), EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        jobs.scheduler.modify_job("knowledge-reindex", next_run_time=datetime.now(UTC))
        await asyncio.wait_for(done.wait(), 120)
        [status] = jobs.status()
        assert status.last is not None and status.last.ok
        assert status.last.outcome.startswith("1 added, 0 changed, 0 removed documents")
        assert status.last.started is not None and status.last.finished is not None
    finally:
        jobs.stop()
        await asyncio.to_thread(services.knowledge.close)  # type: ignore[union-attr]
