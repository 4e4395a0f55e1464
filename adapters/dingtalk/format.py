"""DingTalk message formats, as plain functions: a robot callback (``/v1.0/im/bot/messages/get``,
read with the SDK's ``ChatbotMessage``) to a Message, and a part of a Reply to robot markdown.

Kept apart from the adapter so they can be read and tested without a connection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from dingtalk_stream import ChatbotMessage

from adapters.common.parts import Part, render_markdown
from bot.adapter import REPLY_EXPIRES_AT
from bot.message import ConversationType, InvalidMessage, Message, utcnow

PLATFORM = "dingtalk"
SINGLE_CHAT, GROUP_CHAT = "1", "2"

# Error codes. The sessionWebhook and the old API answer {"errcode", "errmsg"}; the open API
# (api.dingtalk.com) an HTTP error with {"code", "message"}.
# Rate limits, retried by the outbox with backoff: open API QPS per app and API / per API
# (HTTP 403), the old API's 90018 / 90002, and a robot's "send too fast" (410100, 130101).
RATE_LIMIT_CODES = frozenset(
    {
        "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
        "Forbidden.AccessDenied.QpsLimitForApi",
        "90018",
        "90002",
        "410100",
        "130101",
    }
)
# The access token was refused (expired early, or the secret was rotated): fetch a new one.
TOKEN_INVALID_CODES = frozenset({"InvalidAuthentication", "40014", "88"})
# The sessionWebhook is gone (it lives about 90 minutes): send through the open API instead.
SESSION_GONE_CODES = frozenset({"300001"})
# "message too long, exceed 20000 bytes": split the part and send the pieces.
TOO_LONG_CODES = frozenset({"460101"})


class Skipped(NamedTuple):
    """A callback that is not a message for the inbox, and why."""

    reason: str


class Malformed(NamedTuple):
    """A callback whose data cannot be read as a robot message, and what is wrong."""

    reason: str


# -- receiving --------------------------------------------------------------------------------


def _millis(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def message_text(message: ChatbotMessage) -> tuple[str, int]:
    """The text of a text or richText message and the number of pictures in it. DingTalk
    leaves the robot's own @-mention out of the text; other people's stay as '@Name'."""
    if message.message_type == "text" and message.text is not None:
        return str(message.text.content or ""), 0
    if message.message_type == "richText" and message.rich_text_content is not None:
        items = [i for i in message.rich_text_content.rich_text_list or [] if isinstance(i, dict)]
        text = "".join(str(i["text"]) for i in items if isinstance(i.get("text"), str))
        pictures = sum(1 for i in items if i.get("type") == "picture" or "downloadCode" in i)
        return text, pictures
    if message.message_type == "picture":
        return "", 1
    return "", 0


def parse_callback(data: Any) -> Message | Skipped | Malformed:
    """The data of a robot message callback as the core's Message.

    Single chats count as addressed to the bot; in groups DingTalk delivers only messages that
    @-mention the robot (``isInAtList``). Pictures and files arrive with empty text and their
    type in ``raw``, so the normalize middleware drops them with a trace entry.
    """
    if not isinstance(data, dict):
        return Malformed(f"the data is a {type(data).__name__}, not a JSON object")
    try:
        message = ChatbotMessage.from_dict(data)
        text, pictures = message_text(message)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return Malformed(f"not a robot message: {type(exc).__name__}: {exc}")
    if not message.message_id or not message.conversation_id:
        return Malformed("no msgId or conversationId")
    if message.conversation_type not in (SINGLE_CHAT, GROUP_CHAT):
        return Skipped(f"conversationType {message.conversation_type!r} is not a chat")

    at_users = [
        {"dingtalk_id": user.dingtalk_id or "", "staff_id": user.staff_id or ""}
        for user in message.at_users or []
    ]
    bot_ids = {message.chatbot_user_id} - {None, ""}
    single = message.conversation_type == SINGLE_CHAT
    mentioned = (
        single
        or message.is_in_at_list is True
        or any(user["dingtalk_id"] in bot_ids for user in at_users)
    )
    chat_type: ConversationType = "p2p" if single else "group"
    raw: dict[str, Any] = {
        "message_type": message.message_type or "",
        "conversation_type": message.conversation_type,
        "conversation_title": message.conversation_title or "",
        "sender_staff_id": message.sender_staff_id or "",
        "sender_nick": message.sender_nick or "",
        "robot_code": message.robot_code or "",
        "at_users": [user for user in at_users if user["dingtalk_id"] not in bot_ids],
        "session_webhook": message.session_webhook or "",
    }
    if pictures:
        raw["pictures"] = pictures
    expires = _millis(message.session_webhook_expired_time)
    if message.session_webhook and expires is not None:
        raw[REPLY_EXPIRES_AT] = expires.isoformat()
    try:
        return Message(
            platform=PLATFORM,
            conversation_id=message.conversation_id,
            conversation_type=chat_type,
            sender_id=message.sender_staff_id or message.sender_id or "",
            sender_name=message.sender_nick or "",
            text=text.strip(),
            platform_message_id=message.message_id,
            mentioned_bot=mentioned,
            sent_at=_millis(message.create_at) or utcnow(),
            raw=raw,
        )
    except InvalidMessage as exc:  # ids of another type, or too long to be DingTalk's
        return Malformed(str(exc))


# -- sending ----------------------------------------------------------------------------------


def mention_prefix(names: tuple[str, ...]) -> str:
    """What precedes the first message's text: '@id' per mention, on a line of its own (a
    robot message @-mentions someone when its text holds '@<their id>' and ``at`` lists it)."""
    return " ".join(f"@{name}" for name in names) + "\n\n" if names else ""


def markdown_text(part: Part) -> str:
    """A part as robot markdown: the mentions, the text, then the references."""
    return mention_prefix(part.mentions) + render_markdown(part)


def markdown_overhead(part: Part) -> int:
    """What rendering adds to a part beyond ``Part.size``: bold around the references' label
    and the link syntax of web pages."""
    links = sum(len(ref.url) + 4 for ref in part.references if ref.url)
    return 6 + links


def markdown_title(text: str, limit: int = 24) -> str:
    """The title DingTalk shows in notifications and the chat list: the first line, plain."""
    for line in text.splitlines():
        plain = line.strip().lstrip("#>*-` ").strip()
        if plain and not plain.startswith("@"):
            return plain if len(plain) <= limit else plain[: limit - 1] + "…"
    return "Answer"
