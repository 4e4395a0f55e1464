"""Group manners on Feishu: follow-ups and human answers found by parent_id/root_id, reactions
to the bot's answers stored as feedback, and /hxd forget recalling the bot's message."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.storage.models import Feedback
from tests.adapters.feishu.conftest import VERIFICATION_TOKEN, FeishuBot, MakeFeishuBot
from tests.adapters.feishu.fake_feishu import load_event
from tests.manners.conftest import Clock

pytestmark = pytest.mark.integration

ASKER = "ou_84aad35d084aa403a838cf73ee18467"
PIPELINE = ["normalize", "gate", "tests.plugins:Confidence", "generate"]
GATE = {"admins": ["ou_admin"], "timezone": "Asia/Shanghai"}


def event(
    fb: FeishuBot, name: str = "text_group.json", sender: str = ASKER, **overrides: Any
) -> dict:
    overrides.setdefault("token", VERIFICATION_TOKEN)
    found = load_event(name, app_id=fb.fake.app_id, **overrides)
    if "sender" in found["event"]:
        found["event"]["sender"]["sender_id"]["open_id"] = sender
    return found


async def manners_bot(
    feishu_bot: MakeFeishuBot, clock: Clock | None = None, **gate: Any
) -> FeishuBot:
    return await feishu_bot(
        pipeline=PIPELINE,
        sections={"middleware": {"gate": {**GATE, **gate}}},
        clock=clock,
    )


async def test_a_reply_to_the_bots_answer_is_a_follow_up(feishu_bot: MakeFeishuBot) -> None:
    fb = await manners_bot(feishu_bot)
    await fb.post(event(fb, "text_group_mention.json", message_id="om_q1",
                        bot_open_id=fb.fake.bot_open_id))  # fmt: skip
    await fb.bot.join()
    [answer] = fb.fake.sent
    assert answer.target == "om_q1" and answer.reply_in_thread

    # In the answer's thread, replying to it, not @-mentioned, and unsure: a follow-up.
    await fb.post(event(fb, message_id="om_q2", text="and with CUDA 11? (p=0.1)",
                        parent_id=answer.message_id, root_id="om_q1"))  # fmt: skip
    await fb.bot.join()
    question, follow_up = await fb.messages()
    assert (follow_up["reply_to"], follow_up["thread_root"]) == (answer.message_id, "om_q1")
    assert follow_up["status"] == "answered"
    gate = next(s for s in follow_up["trace"] if s["name"] == "gate")
    assert gate["detail"]["follow_up"] == question["id"]
    assert len(fb.fake.sent) == 2
    assert "How do I install mmdetection" in fb.llm.calls[1][-1]["content"]


async def test_a_members_reply_to_the_question_withdraws_the_held_answer(
    feishu_bot: MakeFeishuBot,
) -> None:
    clock = Clock()
    fb = await manners_bot(feishu_bot, clock=clock)
    await fb.post(event(fb, message_id="om_q1"))
    await fb.bot.join()
    [held] = await fb.messages()
    assert held["reply"]["status"] == "held"
    await fb.post(event(fb, sender="ou_bob", message_id="om_a1",
                        text="pip install mmdet, and mmcv from the CUDA 12 index",
                        parent_id="om_q1", root_id="om_q1"))  # fmt: skip
    await fb.bot.join()
    clock.advance(minutes=3)
    assert await fb.bot.release_held() == 1
    await fb.bot.join()
    question = (await fb.messages())[0]
    assert question["decision"] == "ignored: answered-by-human"
    assert all(sent.target != "om_q1" for sent in fb.fake.sent)  # nothing posted under it


async def test_reactions_on_the_bots_answer_are_feedback(feishu_bot: MakeFeishuBot) -> None:
    fb = await manners_bot(feishu_bot)
    await fb.post(event(fb, "text_group_mention.json", bot_open_id=fb.fake.bot_open_id))
    await fb.bot.join()
    [answer] = fb.fake.sent
    for emoji, user in [("THUMBSUP", "ou_u1"), ("ThumbsDown", "ou_u2"), ("SMILE", "ou_u3")]:
        reaction = event(fb, "reaction_created.json", message_id=answer.message_id,
                         emoji_type=emoji)  # fmt: skip
        reaction["event"]["user_id"]["open_id"] = user
        assert (await fb.post(reaction)).status_code == 200
    elsewhere = event(fb, "reaction_created.json", message_id="om_not_ours")
    assert (await fb.post(elsewhere)).status_code == 200

    def rows(session: Any) -> list[tuple[str, int, str]]:
        found = session.scalars(select(Feedback).order_by(Feedback.id))
        return [(f.user_id, f.rating, f.comment) for f in found]

    assert await fb.bot.db.run(rows) == [("ou_u1", 1, "THUMBSUP"), ("ou_u2", -1, "ThumbsDown")]


async def test_forget_recalls_the_last_answer(feishu_bot: MakeFeishuBot) -> None:
    fb = await manners_bot(feishu_bot)
    await fb.post(event(fb, "text_group_mention.json", bot_open_id=fb.fake.bot_open_id))
    await fb.bot.join()
    [answer] = fb.fake.sent
    await fb.post(event(fb, sender="ou_mallory", text="/hxd forget"))
    await fb.bot.join()
    assert fb.fake.deleted == []
    await fb.post(event(fb, sender="ou_admin", text="/hxd forget"))
    await fb.bot.join()
    assert fb.fake.deleted == [answer.message_id]
    assert "Deleted my answer" in fb.fake.sent[-1].text()
    await fb.post(event(fb, sender="ou_admin", text="/hxd forget"))
    await fb.bot.join()
    assert "nothing here to forget" in fb.fake.sent[-1].text()
