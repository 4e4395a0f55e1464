"""Answers out: markdown @-mentioning the asker through the sessionWebhook, the robot open API
when the webhook has expired, retries and failures with DingTalk's codes in the trace, the
non-answer to chitchat, and AI card streaming."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.adapters.dingtalk.conftest import MakeDingTalkBot
from tests.adapters.dingtalk.fake_dingtalk import Failure
from tests.contracts.adapter import ANSWER
from tests.fakes import GatedChatModel, ScriptedChatModel

pytestmark = pytest.mark.integration

LONG = "\n\n".join(
    f"第 {i} 段：安装 mmcv 需要匹配 CUDA 版本的预编译包，请先确认驱动与 PyTorch 的版本。" * 6
    for i in range(12)
)


async def test_a_group_question_is_answered_by_webhook_at_mentioning_the_asker(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    dt = await dingtalk_bot()
    question = dt.fake.message("text_group.json")
    await dt.deliver(question)
    view = await dt.only_message()
    assert view["status"] == "answered"
    assert view["mentioned_bot"] is True
    assert view["text"] == "How do I install mmdetection with CUDA 12?"
    assert view["sender_name"] == "Alice"
    [sent] = dt.fake.sent
    assert sent.route == "session_webhook"
    assert sent.conversation_id == question["conversationId"]
    assert sent.at_user_ids == ["staff-alice"]
    assert sent.text.startswith("@staff-alice\n\n" + ANSWER)
    assert "docs/get_started.md § Installation" in sent.text
    assert sent.title == ANSWER[:23] + "…"
    step = dt.send_step(view)
    assert step["verdict"] == "sent"
    assert step["detail"]["route"] == "session_webhook"
    assert step["detail"]["parts"] == 1


async def test_a_single_chat_counts_as_addressed_and_mentions_nobody(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    dt = await dingtalk_bot()
    await dt.deliver(dt.fake.message("text_single.json"))
    view = await dt.only_message()
    assert view["status"] == "answered" and view["mentioned_bot"] is True
    [sent] = dt.fake.sent
    assert sent.at_user_ids == [] and sent.text.startswith(ANSWER)


async def test_an_expired_webhook_falls_back_to_the_open_api(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    dt = await dingtalk_bot()
    question = dt.fake.message(session_ttl_ms=-1000)
    await dt.deliver(question)
    view = await dt.only_message()
    assert view["status"] == "answered"
    [sent] = dt.fake.sent
    assert sent.route == "group"
    assert sent.conversation_id == question["conversationId"]
    assert sent.text.startswith("@Alice\n\n" + ANSWER)  # named: the open API cannot @
    detail = dt.send_step(view)["detail"]
    assert detail["route"] == "open_api"
    assert detail["why"].startswith("sessionWebhook expired at ")
    assert dt.fake.token_requests == 1


async def test_a_webhook_that_dingtalk_ended_early_falls_back_to_the_open_api(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    """A long answer, or one resumed after a restart: DingTalk says the session is gone."""
    model = GatedChatModel(ANSWER)
    dt = await dingtalk_bot(llm=model)
    await dt.deliver(dt.fake.message("text_single.json"))
    await asyncio.wait_for(model.started.wait(), 10)
    dt.fake.expire_sessions()
    model.gate.set()
    view = await dt.only_message()
    assert view["status"] == "answered"
    [sent] = dt.fake.sent
    assert sent.route == "single" and sent.user_ids == ["staff-alice"]
    detail = dt.send_step(view)["detail"]
    assert detail["route"] == "open_api"
    assert detail["why"] == "sessionWebhook refused: code 300001: session 不存在"


async def test_a_long_answer_is_split_and_a_part_refused_as_too_long_split_again(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    dt = await dingtalk_bot(llm=ScriptedChatModel(LONG), max_message_chars=1500)
    dt.fake.webhook_failures = [Failure(200, 460101, "message too long, exceed 20000 bytes")]
    await dt.deliver(dt.fake.message())
    view = await dt.only_message()
    assert view["status"] == "answered", view
    texts = [sent.text for sent in dt.fake.sent]
    assert len(texts) >= 3
    assert all(len(text) <= 1500 for text in texts)
    assert sum(text.count("安装 mmcv") for text in texts) == 72
    assert texts[0].startswith("@staff-alice\n\n") and dt.fake.sent[0].at_user_ids
    assert all(not sent.at_user_ids for sent in dt.fake.sent[1:])
    assert "docs/get_started.md" in texts[-1]
    assert dt.send_step(view)["detail"]["parts"] == len(texts)


@pytest.mark.parametrize(
    ("failure", "where"),
    [
        (Failure(200, 410100, "send too fast, exceed 20 times per minute"), "webhook"),
        (Failure(403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "QPS limit"), "open_api"),
        (Failure(502, "ServiceUnavailable", "bad gateway"), "open_api"),
    ],
)
async def test_rate_limits_are_retried_by_the_outbox(
    dingtalk_bot: MakeDingTalkBot, failure: Failure, where: str
) -> None:
    dt = await dingtalk_bot()
    if where == "webhook":
        dt.fake.webhook_failures = [failure]
        question = dt.fake.message()
    else:
        dt.fake.openapi_failures = [failure]
        question = dt.fake.message(session_ttl_ms=-1000)
    await dt.deliver(question)
    view = await dt.only_message()
    assert view["status"] == "answered"
    assert len(dt.fake.sent) == 1
    assert dt.send_step(view)["detail"]["attempts"] == 2


async def test_a_retried_send_does_not_post_the_parts_already_sent(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    dt = await dingtalk_bot(llm=ScriptedChatModel(LONG), max_message_chars=1500)
    dt.fake.webhook_failures = [None, Failure(200, 410100, "send too fast")]
    await dt.deliver(dt.fake.message())
    view = await dt.only_message()
    assert view["status"] == "answered"
    texts = [sent.text for sent in dt.fake.sent]
    assert len(texts) == len(set(texts))
    assert sum(text.count("安装 mmcv") for text in texts) == 72


async def test_an_expired_token_is_fetched_again_once(dingtalk_bot: MakeDingTalkBot) -> None:
    dt = await dingtalk_bot()
    await dt.deliver(dt.fake.message(session_ttl_ms=-1000, text="How do I install mmdet?"))
    await dt.fake.wait_for(lambda: len(dt.fake.sent) == 1)
    dt.fake.revoke_token()
    await dt.deliver(dt.fake.message(session_ttl_ms=-1000, text="Where are the configs?"))
    await dt.fake.wait_for(lambda: len(dt.fake.sent) == 2)
    await dt.bot.join()
    assert dt.fake.token_requests == 2
    views = await dt.messages()
    assert [v["status"] for v in views] == ["answered", "answered"]
    assert dt.send_step(views[1])["detail"]["attempts"] == 1


async def test_other_errors_fail_the_message_with_dingtalks_code(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    dt = await dingtalk_bot()
    dt.fake.openapi_failures = [
        Failure(400, "invalidParameter.openConversationId", "openConversationId 不合法")
    ]
    await dt.deliver(dt.fake.message(session_ttl_ms=-1000))
    view = await dt.only_message()
    assert view["status"] == "failed"
    assert "code invalidParameter.openConversationId" in view["decision"]
    assert "openConversationId 不合法" in view["decision"]
    step = dt.send_step(view)
    assert step["detail"]["attempts"] == 1
    assert step["detail"]["code"] == "invalidParameter.openConversationId"
    assert step["detail"]["route"] == "open_api"
    assert view["reply"]["status"] == "failed"
    assert dt.fake.sent == []


async def test_chitchat_at_the_bot_is_silence_or_the_groups_non_answer(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    polite = "cidGroupPolite0001=="
    dt = await dingtalk_bot(groups={polite: {"non_answer": "我只回答 mmdetection 的问题。"}})
    await dt.deliver(dt.fake.message(text="haha thanks everyone"))
    await dt.deliver(dt.fake.message(text="haha thanks everyone", conversationId=polite))
    await dt.bot.join()
    silent, answered = await dt.messages()
    assert silent["status"] == "ignored" and silent["decision"] == "ignored: chitchat"
    assert answered["status"] == "answered"
    non_answer, send = answered["trace"][-2:]
    assert non_answer["name"] == "non_answer"
    assert non_answer["detail"] == {"instead_of": "ignored: chitchat"}
    assert send["name"] == "send" and send["verdict"] == "sent"
    [sent] = dt.fake.sent
    assert sent.conversation_id == polite
    assert sent.text == "@staff-alice\n\n我只回答 mmdetection 的问题。"
    assert sent.at_user_ids == ["staff-alice"]
    assert dt.llm.calls == []


async def test_a_long_answer_streams_in_an_ai_card_when_configured(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    dt = await dingtalk_bot(
        llm=ScriptedChatModel(LONG), card_template_id="tpl-ai-card.schema", card_step_chars=500
    )
    question = dt.fake.message()
    await dt.deliver(question)
    view = await dt.only_message()
    assert view["status"] == "answered", view
    assert dt.fake.sent == []
    [(track, card)] = dt.fake.cards.items()
    assert card.template_id == "tpl-ai-card.schema"
    assert card.open_space_id == f"dtv1.card//IM_GROUP.{question['conversationId']}"
    assert card.at_user_ids == {"staff-alice": "Alice"}
    final = card.params["content"]
    assert final.count("安装 mmcv") == 72 and "docs/get_started.md" in final
    assert card.params["flowStatus"] == "3"
    contents = [content for content, _ in card.streamed]
    assert len(contents) >= 3
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(contents))
    assert [final for _, final in card.streamed] == [False] * (len(contents) - 1) + [True]
    assert contents[-1] == final
    detail = dt.send_step(view)["detail"]
    assert detail["route"] == "ai_card" and detail["card"] == track
    assert detail["updates"] == len(contents)


async def test_a_short_answer_stays_a_message_when_cards_are_configured(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    dt = await dingtalk_bot(card_template_id="tpl-ai-card.schema")
    await dt.deliver(dt.fake.message())
    view = await dt.only_message()
    assert view["status"] == "answered"
    assert dt.fake.cards == {} and len(dt.fake.sent) == 1
