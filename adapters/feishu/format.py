"""Feishu message formats, as plain functions: an `im.message.receive_v1` event to a Message,
and a part of a Reply (adapters.common.parts) to `post` rich text.

Kept apart from the adapter so they can be read and tested without lark-oapi.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from adapters.common.parts import Part, reference_line
from adapters.common.split import blocks
from bot.message import ConversationType, InvalidMessage, Message, Reaction, utcnow

PLATFORM = "feishu"

# Error codes in open API answers. Rate limits are retried by the outbox with backoff;
# "too long" makes the adapter split the part and send the pieces.
# 99991400: open platform frequency limit (documented, with HTTP 429); 230020: IM send
# frequency limit. The others were named in the issue; kept so they are handled either way.
RATE_LIMIT_CODES = frozenset({99991400, 99991402, 230020, 11020, 11021, 11232})
TOO_LONG_CODES = frozenset({230025, 230021, 230022})
# The tenant token was refused (revoked, or the secret was rotated): fetch a new one and retry.
TOKEN_INVALID_CODES = frozenset({99991663})


class Skipped(NamedTuple):
    """An event that is not a message for the inbox, and why."""

    reason: str


class Malformed(NamedTuple):
    """An authentic event that cannot be read (ids of the wrong type, ...), and why."""

    reason: str


# -- receiving --------------------------------------------------------------------------------


def _mention_names(mentions: list[dict[str, Any]]) -> dict[str, str]:
    """Placeholder key ('@_user_1') -> '@Name', the form the normalize middleware strips."""
    names = {}
    for mention in mentions:
        key = mention.get("key")
        if key:
            name = re.sub(r"\s+", "", str(mention.get("name") or "")) or "user"
            names[key] = f"@{name}"
    return names


def _replace_mentions(text: str, names: Mapping[str, str]) -> str:
    # Longest keys first, so '@_user_10' is not read as '@_user_1' followed by '0'.
    for key in sorted(names, key=len, reverse=True):
        text = text.replace(key, names[key])
    return text


def _post_body(content: dict[str, Any]) -> dict[str, Any]:
    """Receive events carry {"title", "content"}; sent posts wrap that in a locale."""
    if isinstance(content.get("content"), list):
        return content
    for value in content.values():
        if isinstance(value, dict) and isinstance(value.get("content"), list):
            return value
    return {}


def flatten_post(content: dict[str, Any], names: Mapping[str, str] | None = None) -> str:
    """Rich text to plain text: one line per paragraph, links as 'text (url)', mentions as
    '@Name', code blocks kept whole in ``` fences; images and emoji are dropped."""
    names = names or {}
    body = _post_body(content)
    lines: list[str] = []
    title = str(body.get("title") or "").strip()
    if title:
        lines.append(title)
    for paragraph in body.get("content") or []:
        if not isinstance(paragraph, list):
            continue
        parts: list[str] = []
        for element in paragraph:
            if not isinstance(element, dict):
                continue
            tag = element.get("tag")
            if tag in ("text", "md"):
                parts.append(_replace_mentions(str(element.get("text") or ""), names))
            elif tag == "a":
                text, href = str(element.get("text") or ""), str(element.get("href") or "")
                parts.append(f"{text} ({href})" if href and href != text else text or href)
            elif tag == "at":
                key = str(element.get("user_id") or "")
                parts.append(names.get(key) or f"@{element.get('user_name') or 'user'}")
            elif tag == "code_block":
                language = str(element.get("language") or "").lower()
                code = str(element.get("text") or "").rstrip("\n")
                if parts:
                    lines.append("".join(parts))
                    parts = []
                lines.append(f"```{language}\n{code}\n```")
        if parts:
            lines.append("".join(parts))
    return "\n".join(line for line in lines if line.strip())


def _sent_at(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return utcnow()


def parse_message_event(
    envelope: dict[str, Any],
    bot_open_id: str | None,
    quoted_text: Callable[[str], str | None] = lambda message_id: None,
) -> Message | Skipped | Malformed:
    """An `im.message.receive_v1` event (schema 2.0) as the core's Message.

    Text and post messages carry their text; images, files, stickers, cards... arrive with
    empty text and their ``message_type`` in ``raw``, so the normalize middleware drops them
    with a trace entry. p2p chats always count as addressed to the bot.
    """
    header = envelope.get("header") or {}
    event = envelope.get("event") or {}
    message = event.get("message") or {}
    sender = event.get("sender") or {}
    message_id = message.get("message_id")
    chat_id = message.get("chat_id")
    if not message_id or not chat_id:
        return Skipped("no message_id or chat_id in the event")
    if not isinstance(message_id, str) or not isinstance(chat_id, str):
        return Malformed("message_id and chat_id must be strings")
    if sender.get("sender_type") not in (None, "", "user"):
        return Skipped(f"sent by a {sender.get('sender_type')}, not a person")
    ids = sender.get("sender_id") or {}
    sender_id = ids.get("open_id") or ids.get("union_id") or ids.get("user_id") or ""

    mentions = [m for m in message.get("mentions") or [] if isinstance(m, dict)]
    names = _mention_names(mentions)
    mentioned_bot = bool(bot_open_id) and any(
        (m.get("id") or {}).get("open_id") == bot_open_id for m in mentions
    )
    message_type = str(message.get("message_type") or "")
    try:
        content = json.loads(message.get("content") or "{}")
    except (TypeError, ValueError):
        content = {}
    if not isinstance(content, dict):
        content = {}
    if message_type == "text":
        text = _replace_mentions(str(content.get("text") or ""), names)
    elif message_type == "post":
        text = flatten_post(content, names)
    else:
        text = ""

    chat_type: ConversationType = "p2p" if message.get("chat_type") == "p2p" else "group"
    parent_id = message.get("parent_id") or ""
    raw: dict[str, Any] = {
        "message_type": message_type,
        "chat_type": message.get("chat_type") or "",
        "event_id": header.get("event_id") or "",
        "message_id": message_id,
        "parent_id": parent_id,
        "root_id": message.get("root_id") or "",
        "thread_id": message.get("thread_id") or "",
        "tenant_key": header.get("tenant_key") or "",
        "mentions": [
            {"name": m.get("name") or "", "open_id": (m.get("id") or {}).get("open_id") or ""}
            for m in mentions
        ],
    }
    if parent_id:
        quoted = quoted_text(parent_id)
        if quoted:
            raw["quoted_text"] = quoted
    try:
        return Message(
            platform=PLATFORM,
            conversation_id=chat_id,
            conversation_type=chat_type,
            sender_id=sender_id,
            text=text.strip(),
            platform_message_id=message_id,
            mentioned_bot=mentioned_bot or chat_type == "p2p",
            sent_at=_sent_at(message.get("create_time")),
            reply_to=parent_id,
            thread_root=message.get("root_id") or "",
            raw=raw,
        )
    except InvalidMessage as exc:
        return Malformed(str(exc))


def parse_reaction_event(
    envelope: dict[str, Any], positive: frozenset[str], negative: frozenset[str]
) -> Reaction | Skipped:
    """An `im.message.reaction.created_v1` event as feedback on the message reacted to: +1 for
    an emoji in ``positive``, -1 for one in ``negative`` (upper-cased); others are skipped."""
    event = envelope.get("event") or {}
    message_id = str(event.get("message_id") or "")
    emoji = str((event.get("reaction_type") or {}).get("emoji_type") or "")
    user = event.get("user_id") or {}
    user_id = user.get("open_id") or user.get("union_id") or user.get("user_id") or ""
    if not message_id or not emoji:
        return Skipped("no message_id or emoji in the reaction")
    if event.get("operator_type") not in (None, "", "user"):
        return Skipped(f"a reaction by a {event.get('operator_type')}, not a person")
    key = emoji.upper()
    rating = 1 if key in positive else -1 if key in negative else 0
    if rating == 0:
        return Skipped(f"reaction {emoji} says neither right nor wrong")
    return Reaction(PLATFORM, message_id, user_id, rating, emoji)


# -- sending ----------------------------------------------------------------------------------


def post_content(part: Part) -> dict[str, Any]:
    """A Feishu `post`: paragraphs of text, code blocks, then numbered references (links for
    web pages, 'path § heading' for files)."""
    paragraphs: list[list[dict[str, Any]]] = []
    for kind, language, body in blocks(part.text):
        if kind == "code":
            element: dict[str, Any] = {"tag": "code_block", "text": body}
            if language:
                element["language"] = language.upper()
            paragraphs.append([element])
        else:
            paragraphs.append([{"tag": "text", "text": body}])
    if part.mentions:
        ats = [{"tag": "at", "user_id": user_id} for user_id in part.mentions]
        if paragraphs and paragraphs[0][0]["tag"] == "text":
            paragraphs[0] = [*ats, {"tag": "text", "text": " "}, *paragraphs[0]]
        else:
            paragraphs.insert(0, ats)
    if part.references:
        paragraphs.append([{"tag": "text", "text": f"{part.label}:"}])
        for number, ref in part.numbered():
            if ref.url:
                paragraphs.append(
                    [
                        {"tag": "text", "text": f"[{number}] "},
                        {"tag": "a", "text": ref.title or ref.url, "href": ref.url},
                    ]
                )
            else:
                paragraphs.append([{"tag": "text", "text": reference_line(number, ref)}])
    return {"zh_cn": {"title": "", "content": paragraphs}}
