"""WeCom message formats, as plain functions: a decrypted app callback (XML) or AI bot callback
(JSON) to a Message, and a part of a Reply (adapters.common.parts) to the JSON body of a send.

Kept apart from the adapter so they can be read and tested without a server.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import xmltodict
from wechatpy.enterprise import parse_message

from adapters.common.parts import Part, render_markdown, render_plain
from bot.adapter import REPLY_EXPIRES_AT
from bot.message import ConversationType, Message, utcnow

PLATFORM = "wecom"

# Error codes in API answers (errcode). 45009: API call frequency limit (retried by the outbox
# with backoff); 45033: too many concurrent calls. 40014 / 42001: the access token is invalid /
# expired (refreshed once, then the call is repeated once). 45002: the content is too long (the
# part is split and sent again).
RATE_LIMIT_CODES = frozenset({45009, 45033})
TOKEN_EXPIRED_CODES = frozenset({40014, 42001})
TOO_LONG_CODES = frozenset({45002})
# What an admin can do about the errors seen most when setting an app up.
ADVICE = {
    40001: "the app secret is wrong (app details page > Secret)",
    40013: "the corp_id is wrong (My Company > Company ID)",
    60020: "add this server's public IP to the app's Trusted IPs (企业可信IP)",
    81013: "the user is outside the app's Visible Range (可见范围)",
    93000: "the group robot's webhook key is wrong, or the robot was removed from the group",
}

# A response_url is good for one call within an hour; keep a margin.
RESPONSE_URL_SECONDS = 3600 - 60

# WeChat-style quote, as WeCom writes it into the text of a reply to a message:
#   「Name：quoted text」
#   - - - - - - - - - - - - - - -
#   the reply
_QUOTE = re.compile(
    r"\A\s*「(?P<name>[^：:」\n]{1,64})[：:](?P<quoted>.*?)」[ \t]*\n[ \t]*(?:-[ \t]*){3,}\n",
    re.S,
)


class Skipped(NamedTuple):
    """A callback that is not a message for the inbox, and why."""

    reason: str


class Quote(NamedTuple):
    text: str
    sender: str = ""
    quoted: str = ""


def strip_quote(text: str) -> Quote:
    """The reply without the quoted message above it, and what was quoted (by whom)."""
    match = _QUOTE.match(text)
    if not match:
        return Quote(text)
    return Quote(text[match.end() :], match.group("name").strip(), match.group("quoted").strip())


def _sent_at(seconds: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(seconds), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return utcnow()


def _with_quote(raw: dict[str, Any], text: str) -> str:
    quote = strip_quote(text)
    if quote.quoted:
        raw["quoted_text"] = quote.quoted
        raw["quoted_sender"] = quote.sender
    return quote.text.strip()


def parse_app_callback(app: str, xml: str) -> Message | Skipped:
    """A decrypted app callback (XML, through wechatpy's parser) as the core's Message.

    Text messages carry their text, with a quoted message moved to ``raw``; images, voice,
    files and events (entering the app, menu clicks ...) are stored with empty text so the
    normalize middleware drops them with a trace entry. A single chat always counts as
    addressed to the bot; a message that names a group (``ChatId``) belongs to that group.
    Raises ValueError for XML that is not a WeCom callback.
    """
    try:
        fields = xmltodict.parse(xml)["xml"]
        message = parse_message(xml)
    except Exception as exc:  # expat, a missing MsgType ...: not a callback we can read
        raise ValueError(f"not a WeCom callback: {type(exc).__name__}") from None
    if not isinstance(fields, dict):
        raise ValueError("not a WeCom callback: empty <xml>")
    sender = str(fields.get("FromUserName") or "")
    if not sender:
        return Skipped("no FromUserName in the callback")
    kind = str(fields.get("MsgType") or "").lower()
    event = str(fields.get("Event") or "").lower()
    create_time = str(fields.get("CreateTime") or "")
    message_id = str(fields.get("MsgId") or "")
    # WeCom retries a callback it got no 200 for; events have no MsgId (its advice: dedupe
    # them on sender + create time, plus the event type here).
    key = message_id or f"{sender}:{create_time}:{event or kind}"
    chat_id = str(fields.get("ChatId") or "")
    raw: dict[str, Any] = {
        "source": "app",
        "app": app,
        "user": sender,
        "chat_id": chat_id,
        "message_type": f"event:{event}" if kind == "event" else kind,
        "msg_id": message_id,
        "agent_id": str(fields.get("AgentID") or ""),
    }
    text = _with_quote(raw, str(getattr(message, "content", "") or "")) if kind == "text" else ""
    chat_type: ConversationType = "group" if chat_id else "p2p"
    return Message(
        platform=PLATFORM,
        conversation_id=chat_id or f"{app}:{sender}",
        conversation_type=chat_type,
        sender_id=sender,
        text=text,
        platform_message_id=f"{app}:{key}",
        mentioned_bot=True,  # a single chat with the app, or a group chat it was given
        sent_at=_sent_at(create_time),
        raw=raw,
    )


def _mixed_text(payload: dict[str, Any]) -> str:
    items = (payload.get("mixed") or {}).get("msg_item") or []
    texts = [
        str((item.get("text") or {}).get("content") or "")
        for item in items
        if isinstance(item, dict) and item.get("msgtype") == "text"
    ]
    return "\n".join(t for t in texts if t)


def parse_bot_callback(
    bot: str, payload: dict[str, Any], response_url_prefix: str, received: datetime
) -> Message | Skipped:
    """A decrypted AI bot callback (JSON) as the core's Message.

    Text and the text of mixed messages are read; images, voice, files and events are stored
    with empty text. The bot is only called when @-mentioned in a group, or in a single chat.
    The reply goes to the callback's ``response_url`` (kept only when it points at the
    configured API, so an answer never leaves for another host), which WeCom honours once,
    within an hour of the callback.
    """
    sender = str((payload.get("from") or {}).get("userid") or "")
    if not sender:
        return Skipped("no from.userid in the callback")
    kind = str(payload.get("msgtype") or "")
    if kind == "stream":
        return Skipped("a stream refresh (this bot never answers with a stream)")
    event = str((payload.get("event") or {}).get("eventtype") or "") if kind == "event" else ""
    create_time = str(payload.get("create_time") or "")
    message_id = str(payload.get("msgid") or "")
    key = message_id or f"{sender}:{create_time}:{event or kind}"
    chat_id = str(payload.get("chatid") or "") if payload.get("chattype") == "group" else ""
    response_url = str(payload.get("response_url") or "")
    if not response_url.startswith(response_url_prefix):
        response_url = ""
    raw: dict[str, Any] = {
        "source": "bot",
        "bot": bot,
        "user": sender,
        "chat_id": chat_id,
        "message_type": f"event:{event}" if kind == "event" else kind,
        "msg_id": message_id,
        "aibot_id": str(payload.get("aibotid") or ""),
        "response_url": response_url,
        REPLY_EXPIRES_AT: datetime.fromtimestamp(
            received.timestamp() + RESPONSE_URL_SECONDS, UTC
        ).isoformat(),
    }
    if kind == "text":
        text = str((payload.get("text") or {}).get("content") or "")
    elif kind == "mixed":
        text = _mixed_text(payload)
    else:
        text = ""
    text = _with_quote(raw, text)
    quote = payload.get("quote") or {}
    if isinstance(quote, dict) and quote.get("msgtype") == "text":
        raw["quoted_text"] = str((quote.get("text") or {}).get("content") or "")
    chat_type: ConversationType = "group" if chat_id else "p2p"
    return Message(
        platform=PLATFORM,
        conversation_id=chat_id or f"{bot}:{sender}",
        conversation_type=chat_type,
        sender_id=sender,
        text=text,
        platform_message_id=f"{bot}:{key}",
        mentioned_bot=True,
        sent_at=_sent_at(create_time) if create_time else received,
        raw=raw,
    )


# -- sending ----------------------------------------------------------------------------------

Format = Literal["text", "markdown"]


def render(part: Part, message_format: Format) -> str:
    return render_markdown(part) if message_format == "markdown" else render_plain(part)


def markdown_mention(user_id: str) -> str:
    """How a group robot's markdown @-mentions a member."""
    return f"<@{user_id}>"
