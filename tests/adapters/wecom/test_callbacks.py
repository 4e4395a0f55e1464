"""Callbacks end to end: the fake WeCom encrypts and signs what WeCom posts to an app's or an AI
bot's callback URL; the real wechatpy checks and decrypts it, the real core answers, and the
fake records the replies."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.adapters.wecom.conftest import (
    ANSWER,
    OTHER_CHAT,
    USER,
    MakeWeComBot,
    now,
)
from tests.adapters.wecom.fake_wecom import (
    Keys,
    app_callback,
    event_xml,
    msg_id,
    random_aes_key,
    url_check,
)

pytestmark = pytest.mark.integration


async def test_url_verification_answers_the_echostr(wecom_bot: MakeWeComBot) -> None:
    wb = await wecom_bot()
    for url, keys in ((wb.app_url, wb.app_keys), (wb.bot_url, wb.bot_keys)):
        echo = f"echo-{msg_id()}"
        response = await wb.get(url, url_check(keys, echo))
        assert response.status_code == 200
        assert response.text == echo  # as it is: no quotes, no BOM, no newline
        assert response.headers["content-type"].startswith("text/plain")

    forged = await wb.get(wb.app_url, url_check(wb.app_keys, "x", tamper=True))
    other_key = Keys(wb.app_keys.token, random_aes_key(), wb.app_keys.receive_id)
    wrong_key = await wb.get(wb.app_url, url_check(other_key, "x") | {"msg_signature": ""})
    other_app = await wb.get(wb.bot_url, url_check(wb.app_keys, "x"))  # the app's, on the bot
    no_echo = await wb.get(wb.app_url, {"msg_signature": "a", "timestamp": "1", "nonce": "2"})
    assert [forged.status_code, wrong_key.status_code, other_app.status_code] == [401] * 3
    assert no_echo.status_code == 400
    assert await wb.messages() == []


async def test_url_verification_with_a_wrong_aes_key_is_refused(wecom_bot: MakeWeComBot) -> None:
    wb = await wecom_bot()
    # Signed with the right token over a ciphertext made with another key.
    other_key = Keys(wb.app_keys.token, random_aes_key(), wb.app_keys.receive_id)
    response = await wb.get(wb.app_url, url_check(other_key, "hello"))
    assert response.status_code == 401


async def test_an_encrypted_question_is_answered_in_the_single_chat(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot()
    message_id = msg_id()
    response = await wb.post_app(wb.question_xml("怎么安装 mmdet？", message_id))
    assert response.status_code == 200 and response.content == b""
    view = await wb.only_message()
    assert view["status"] == "answered", view
    [sent] = wb.fake.sent
    assert (sent.kind, sent.target, sent.agent_id, sent.msg_type) == (
        "message",
        USER,
        wb.fake.agent_id,
        "text",
    )
    assert ANSWER in sent.content
    assert "参考资料:\n[1] docs/en/get_started.md § Installation" in sent.content
    assert "[2] https://mmdetection.readthedocs.io/en/latest/get_started.html" in sent.content
    raw = await wb.raw(view["id"])
    assert raw["source"] == "app" and raw["app"] == "docs" and raw["msg_id"] == message_id
    messages = await wb.messages()
    assert messages[0]["conversation_id"] == f"docs:{USER}"


async def test_chitchat_is_stored_and_not_answered(wecom_bot: MakeWeComBot) -> None:
    wb = await wecom_bot()
    response = await wb.post_app(wb.question_xml("哈哈 谢谢大家"))
    assert response.status_code == 200
    view = await wb.only_message()
    assert view["decision"] == "ignored: chitchat"
    assert wb.fake.sent == [] and wb.llm.calls == []


async def test_the_same_msgid_five_times_at_once_is_answered_once(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot()
    xml = wb.question_xml("怎么安装 mmdet？", msg_id())
    # WeCom retries a callback it had no answer for within 5 s: retries can overlap.
    responses = await asyncio.gather(*(wb.post_app(xml) for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    view = await wb.only_message()
    assert view["status"] == "answered"
    assert len(wb.fake.sent) == 1 and len(wb.llm.calls) == 1


async def test_a_quoted_message_is_stripped_from_the_question(wecom_bot: MakeWeComBot) -> None:
    wb = await wecom_bot()
    text = "「李四：用 pip install mmcv 就行」\n- - - - - - - - - - - - - - -\n这样装会报错吗？"
    await wb.post_app(wb.question_xml(text))
    view = await wb.only_message()
    assert view["text"] == "这样装会报错吗？"
    raw = await wb.raw(view["id"])
    assert raw["quoted_text"] == "用 pip install mmcv 就行"
    assert raw["quoted_sender"] == "李四"
    prompt = "\n".join(m["content"] for m in wb.llm.calls[0])
    assert "这样装会报错吗？" in prompt and "- - - -" not in prompt


async def test_events_are_stored_once_and_ignored(wecom_bot: MakeWeComBot) -> None:
    """Events have no MsgId: they are deduplicated on sender, create time and event type."""
    wb = await wecom_bot()
    stamp = now()
    enter = event_xml(wb.fake.corp_id, USER, "enter_agent", stamp)
    for _ in range(3):
        assert (await wb.post_app(enter)).status_code == 200
    later = event_xml(wb.fake.corp_id, USER, "enter_agent", stamp + 5)
    click = event_xml(wb.fake.corp_id, USER, "click", stamp)
    for xml in (later, click):
        assert (await wb.post_app(xml)).status_code == 200
    await wb.bot.join()
    messages = await wb.messages()
    assert len(messages) == 3
    assert {m["decision"] for m in messages} == {"ignored: empty"}
    kinds = [next(s for s in m["trace"] if s["name"] == "normalize") for m in messages]
    assert {k["detail"]["kind"] for k in kinds} == {"event:enter_agent", "event:click"}
    assert wb.fake.sent == []


async def test_an_image_is_stored_and_ignored(wecom_bot: MakeWeComBot) -> None:
    wb = await wecom_bot()
    xml = (
        f"<xml><ToUserName><![CDATA[{wb.fake.corp_id}]]></ToUserName>"
        f"<FromUserName><![CDATA[{USER}]]></FromUserName><CreateTime>{now()}</CreateTime>"
        "<MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[https://example.invalid/a.png]]>"
        f"</PicUrl><MediaId><![CDATA[m1]]></MediaId><MsgId>{msg_id()}</MsgId>"
        "<AgentID>1000002</AgentID></xml>"
    )
    assert (await wb.post_app(xml)).status_code == 200
    view = await wb.only_message()
    assert view["decision"] == "ignored: empty"


async def test_an_authentic_callback_that_is_not_a_message_is_refused(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot()
    response = await wb.post_app("<xml><NotAMessage/></xml>")
    assert response.status_code == 400
    assert await wb.messages() == []


async def test_ai_bot_question_in_a_single_chat_is_answered_through_response_url(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot()
    payload = wb.bot_payload("怎么安装 mmdet？")
    response = await wb.post_bot(payload)
    assert response.status_code == 200 and response.content == b""
    view = await wb.only_message()
    assert view["status"] == "answered", view
    [sent] = wb.fake.sent
    assert sent.kind == "response" and sent.msg_type == "markdown"
    assert payload["response_url"].endswith(sent.target)
    assert ANSWER in sent.content
    # Markdown: the heading in bold, web pages as links.
    assert "**参考资料**" in sent.content
    assert "[2] [Get started](https://mmdetection.readthedocs.io/" in sent.content
    assert view["conversation_id"] == f"helper:{USER}"


async def test_ai_bot_mentioned_in_a_group_without_robot_answers_through_response_url(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot()
    await wb.post_bot(wb.bot_payload("怎么安装 mmdet？", chat_id=OTHER_CHAT))
    view = await wb.only_message()
    assert view["status"] == "answered"
    assert view["conversation_id"] == OTHER_CHAT
    assert view["text"] == "@小助手 怎么安装 mmdet？"  # stored as sent
    question = wb.llm.calls[0][-1]["content"]
    assert "怎么安装 mmdet？" in question and "@小助手" not in question  # normalize strips it
    assert [s.kind for s in wb.fake.sent] == ["response"]


async def test_ai_bot_response_url_elsewhere_is_not_followed(wecom_bot: MakeWeComBot) -> None:
    wb = await wecom_bot()
    payload = wb.bot_payload("怎么安装 mmdet？")
    payload["response_url"] = "http://127.0.0.2:9/cgi-bin/aibot/response?response_code=x"
    await wb.post_bot(payload)
    view = await wb.only_message()
    assert view["status"] == "failed"
    assert "no usable response_url" in view["decision"]
    assert wb.fake.sent == []


async def test_refusals_are_logged_without_secrets(
    wecom_bot: MakeWeComBot, caplog: pytest.LogCaptureFixture
) -> None:
    wb = await wecom_bot()
    caplog.set_level(logging.WARNING)
    other = Keys(wb.app_keys.token, random_aes_key(), wb.app_keys.receive_id)
    query, body = app_callback(wb.app_keys, wb.question_xml("hi?"), encrypt_with=other)
    response = await wb.post_raw(wb.app_url, query, body)
    assert response.status_code == 401
    assert response.json() == {"code": 401, "msg": "refused"}
    lines = [r.getMessage() for r in caplog.records if "wecom webhook: refused" in r.getMessage()]
    assert lines == [
        "wecom webhook: refused a request from 127.0.0.1: "
        "cannot decrypt: wrong EncodingAESKey or corp id"
    ]
    for secret in (wb.app_keys.token, wb.app_keys.encoding_aes_key, wb.fake.secret):
        assert secret not in caplog.text


async def test_two_apps_on_one_server_each_have_their_own_path(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot(second_app=True)
    assert wb.ops_keys is not None
    ops_url = f"{wb.server}/callbacks/ops"
    xml = wb.question_xml("怎么安装 mmdet？")
    # Sealed with the docs app's keys: refused on the ops app's path.
    query, body = app_callback(wb.app_keys, xml)
    assert (await wb.post_raw(ops_url, query, body)).status_code == 401
    query, body = app_callback(wb.ops_keys, xml)
    assert (await wb.post_raw(ops_url, query, body)).status_code == 200
    view = await wb.only_message()
    assert view["status"] == "answered"
    assert view["conversation_id"] == f"ops:{USER}"
    [sent] = wb.fake.sent
    assert (sent.agent_id, sent.msg_type) == (1000003, "markdown")
