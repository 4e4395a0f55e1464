"""Teaching the gate from the console, on a real knowledge base and a real gate: a candidate is
fitted beside the gate in use, and only the admin's confirm writes the examples and uses it."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bot.adapter import build_adapters
from bot.app.server import create_app
from bot.app.services import build_services
from bot.config import load_config
from bot.runtime import Bot
from bot.storage import groups
from bot.storage.db import Database
from knowledge.rejection.files import gate_dir
from tests.fakes import ScriptedChatModel
from tests.gate.conftest import write_gate_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def console(tmp_path: Path, indexed: Path) -> Iterator[tuple[TestClient, Bot, Path]]:
    root = tmp_path / "bot"
    shutil.copytree(indexed.parent, root)
    config = load_config(write_gate_config(root, server={"admin_token": "s3cret"}))
    database = Database(config.database_url)
    database.upgrade()
    services = build_services(config, llm=ScriptedChatModel("pip install mmfoo"))
    bot = Bot(services, database, build_adapters(config))
    with TestClient(create_app(bot), headers=AUTH) as client:
        yield client, bot, root
    database.dispose()


def silent_message(client: TestClient, text: str) -> int:
    view = client.post("/api/messages", json={"text": text, "wait": True}).json()
    assert view["decision"] == "ignored: off-topic"
    return int(view["id"])


def proposal_token(html: str) -> str:
    found = re.search(r'action="/console/teach/([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_should_have_answered_is_shown_first_and_applied_on_confirm(
    console: tuple[TestClient, Bot, Path],
) -> None:
    client, bot, root = console
    text = "周末一起去吃火锅吧"
    message_id = silent_message(client, text)
    item = client.get(f"/console/messages/{message_id}/item").text
    assert "silent: the gate gave" in item and "looked most like your bad examples" in item

    assert bot.services.gates is not None
    gate = bot.services.gates.global_gate
    assert gate.stored is not None
    in_use = gate.stored.meta
    good_file = (root / "good.json").read_text(encoding="utf-8")
    learned = gate_dir(bot.config.work_dir) / "learned"

    shown = client.post("/console/teach", data={"message_id": message_id, "label": "good"})
    assert shown.status_code == 200
    assert f"add &#39;{text}&#39; to the good examples" in shown.text
    assert 'class="f1-before"' in shown.text and 'class="f1-after"' in shown.text
    # Shown, not applied: nothing stored, the gate in use is as it was.
    assert not learned.exists() and gate.stored.meta is in_use
    assert bot.db.run_sync(groups.all_feedback) == []

    applied = client.post(f"/console/teach/{proposal_token(shown.text)}", follow_redirects=False)
    assert applied.status_code == 303
    # Stored as an admin's word in the group, as /hxd good there would be; learned from it.
    [word] = bot.db.run_sync(groups.all_feedback)
    assert (word.example, word.rating, word.source) == (text, 1, "admin")
    [taught] = [json.loads(f.read_text(encoding="utf-8")) for f in learned.glob("*.json")]
    assert taught == {"conversation_id": "playground", "good": [text], "bad": []}
    assert (root / "good.json").read_text(encoding="utf-8") == good_file
    assert gate.stored.meta["good"] == in_use["good"] + 1
    assert gate.stored.meta["examples"] != in_use["examples"]
    assert bot.services.gates.refresh() == {}  # the gate in use is the one the examples say
    page = client.get(applied.headers["location"]).text
    assert "Applied: add" in page and 'id="learned"' in page and text in page

    again = client.post(f"/console/teach/{proposal_token(shown.text)}")
    assert again.status_code == 409 and "expired or was applied already" in again.text


def test_a_proposal_is_refused_when_the_examples_changed_meanwhile(
    console: tuple[TestClient, Bot, Path],
) -> None:
    client, bot, root = console
    message_id = silent_message(client, "今晚的球赛谁赢了")
    shown = client.post("/console/teach", data={"message_id": message_id, "label": "good"})
    bad = json.loads((root / "bad.json").read_text(encoding="utf-8"))
    (root / "bad.json").write_text(json.dumps([*bad, "下班了"], ensure_ascii=False), "utf-8")
    refused = client.post(f"/console/teach/{proposal_token(shown.text)}")
    assert refused.status_code == 409 and "changed since" in refused.text
    assert bot.db.run_sync(groups.all_feedback) == []


def test_the_example_lists_are_edited_through_the_same_confirm(
    console: tuple[TestClient, Bot, Path],
) -> None:
    client, bot, root = console
    page = client.get("/console/examples").text
    based_on = re.search(r'name="based_on" value="([^"]+)"', page)
    assert based_on
    shown = client.post(
        "/console/examples",
        data={
            "based_on": based_on.group(1),
            "remove_bad": ["0"],
            "add_bad": "下班了\n周五一起去吃饭",
        },
    )
    assert shown.status_code == 200
    assert "add &#39;下班了&#39; to the bad examples" in shown.text
    assert "remove &#39;" in shown.text
    client.post(f"/console/teach/{proposal_token(shown.text)}")
    bad = json.loads((root / "bad.json").read_text(encoding="utf-8"))
    assert bad[-2:] == ["下班了", "周五一起去吃饭"] and len(bad) == 15
    assert bot.services.gates is not None
    stored = bot.services.gates.global_gate.stored
    assert stored is not None and stored.meta["bad"] == 15
