"""DingTalk through dingtalk-stream: robot messages in over the stream (no public URL), answers
out as markdown @-mentioning the asker, or as an AI card that streams a long answer.

Receiving: the SDK's stream client runs in a thread of its own (adapters.dingtalk.stream). Its
handler stores each robot message through the shared store-then-ack bridge and only then lets
the SDK ack it (500 if storing failed, so the gateway sends it again; 400 for data that is not a
robot message). The answer never happens in the handler: a slow model cannot delay the ack.
The inbox's unique key (platform + msgId) makes a redelivery harmless; a small LRU of msgIds
spares the database the obvious repeats.

Sending (adapters.dingtalk.openapi): through the message's ``sessionWebhook`` while it is valid
(it lives about 90 minutes; ``Message.raw["reply_expires_at"]`` says until when), otherwise (a
long answer, a restart, a resumed message) through the robot open API with the app's access
token. The route taken is in the trace's send step. Long answers are split within
``max_message_chars``; a part DingTalk refuses as too long is split again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from dingtalk_stream import AckMessage, CallbackMessage

from adapters.common.bridge import RecentMap, StoreBridge, StoreFailed
from adapters.common.parts import Part, plan_parts, references_heading, render_markdown, split_part
from adapters.dingtalk.format import (
    RATE_LIMIT_CODES,
    SESSION_GONE_CODES,
    TOKEN_INVALID_CODES,
    TOO_LONG_CODES,
    Malformed,
    Skipped,
    markdown_overhead,
    markdown_text,
    markdown_title,
    parse_callback,
)
from adapters.dingtalk.openapi import DingTalkError, OpenApi
from adapters.dingtalk.settings import DingTalkSettings
from adapters.dingtalk.stream import MessageHandler, StreamClient, StreamThread
from bot.adapter import Adapter, AdapterEnvironment, Delivery, Finding, SendError
from bot.message import Reply

if TYPE_CHECKING:
    from bot.inbox import Inbox

log = logging.getLogger(__name__)

SEEN_MESSAGES = 4096
SENT_PARTS = 4096
MAX_CARD_UPDATES = 20
# Routes a reply can take, as the trace's send step names them.
SESSION_WEBHOOK, OPEN_API, AI_CARD = "session_webhook", "open_api", "ai_card"
# AI card flowStatus values (the SDK's AICardStatus): processing, typing, finished.
CARD_PROCESSING, CARD_INPUTING, CARD_FINISHED = "1", "2", "3"


class DingTalkAdapter(Adapter):
    name = "dingtalk"
    Settings = DingTalkSettings
    settings: DingTalkSettings

    def __init__(
        self, settings: DingTalkSettings, environment: AdapterEnvironment | None = None
    ) -> None:
        super().__init__(settings, environment)
        self.api = OpenApi(settings)
        self._bridge = StoreBridge(self.name)
        self._seen = RecentMap(SEEN_MESSAGES)
        # Parts posted already, so the outbox's retry of a send does not post them again.
        self._sent_parts = RecentMap(SENT_PARTS)
        self._cards = RecentMap(SENT_PARTS)
        self._stream: StreamThread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, inbox: Inbox) -> None:
        self._bridge.attach(inbox, asyncio.get_running_loop())
        client = StreamClient(self.settings, MessageHandler(self._on_message))
        self._stream = StreamThread(client)
        await asyncio.to_thread(self._stream.start)
        log.info(
            "dingtalk: app %s receiving by stream from %s",
            self.settings.client_id,
            self.settings.gateway_endpoint,
        )

    async def stop(self) -> None:
        if self._stream is not None:
            await asyncio.to_thread(self._stream.stop)
            self._stream = None

    # -- receiving ----------------------------------------------------------------------------

    async def _on_message(self, callback: CallbackMessage) -> tuple[int, str]:
        """Called on the stream thread's loop: store the message, then say how to ack."""
        frame = callback.headers.message_id or "?"
        parsed = parse_callback(callback.data)
        if isinstance(parsed, Malformed):
            log.warning("dingtalk: refused callback %s: %s", frame, parsed.reason)
            return AckMessage.STATUS_BAD_REQUEST, "malformed robot message"
        if isinstance(parsed, Skipped):
            log.info("dingtalk: callback %s skipped: %s", frame, parsed.reason)
            return AckMessage.STATUS_OK, "ignored"
        if parsed.platform_message_id in self._seen:
            log.debug("dingtalk: message %s seen already", parsed.platform_message_id)
            return AckMessage.STATUS_OK, "duplicate"
        try:
            stored = await asyncio.to_thread(self._bridge.store, parsed)
        except StoreFailed:
            return AckMessage.STATUS_SYSTEM_EXCEPTION, "not stored: send it again"
        self._seen.put(parsed.platform_message_id)
        return AckMessage.STATUS_OK, "duplicate" if stored.duplicate else "stored"

    # -- sending ------------------------------------------------------------------------------

    async def send(self, delivery: Delivery, reply: Reply) -> str | None:
        """Post the reply; the trace's send step says which route it took (``route``)."""
        try:
            async with self.api.client() as client:
                if self._card_wanted(reply):
                    return await self._send_card(client, delivery, reply)
                return await self._send_messages(client, delivery, reply)
        except DingTalkError as exc:
            delivery.detail["code"] = exc.code
            raise _send_error(exc) from None
        except (httpx.HTTPError, ValueError) as exc:
            # Transport failures, and answers that are not JSON (a proxy's error page).
            raise SendError(f"dingtalk: {type(exc).__name__}: {exc}", retryable=True) from None

    def _card_wanted(self, reply: Reply) -> bool:
        settings = self.settings
        return bool(settings.card_template_id) and len(reply.text) >= settings.card_min_chars

    def _asker(self, delivery: Delivery) -> tuple[str, str]:
        return (
            str(delivery.raw.get("sender_staff_id") or ""),
            str(delivery.raw.get("sender_nick") or ""),
        )

    def _single_chat_user(self, delivery: Delivery) -> str | None:
        """The staff id the open API sends a single chat to; None in groups."""
        if delivery.conversation_type != "p2p":
            return None
        staff_id, _ = self._asker(delivery)
        if not staff_id:
            raise SendError(
                "dingtalk: the sessionWebhook has expired and the asker has no staff id "
                "(not a member of the organisation): the open API cannot reach them",
                retryable=False,
            )
        return staff_id

    def _webhook_route(self, delivery: Delivery) -> tuple[bool, str]:
        """Whether the sessionWebhook can be used, and if not, why."""
        if not delivery.raw.get("session_webhook"):
            return False, "no sessionWebhook"
        margin = timedelta(seconds=self.settings.webhook_margin_seconds)
        if delivery.expired(datetime.now(UTC) + margin):
            assert delivery.expires_at is not None
            return False, f"sessionWebhook expired at {delivery.expires_at.isoformat()}"
        return True, ""

    async def _send_messages(
        self, client: httpx.AsyncClient, delivery: Delivery, reply: Reply
    ) -> str | None:
        """Markdown messages, split within the limit; the route is chosen for the first part
        and turns to the open API for good if DingTalk says the sessionWebhook is gone."""
        staff_id, _ = self._asker(delivery)
        group = delivery.conversation_type == "group"
        mentions = tuple(reply.mentions)
        if group and self.settings.at_asker and staff_id and staff_id not in mentions:
            mentions = (staff_id, *mentions)
        reply = dataclasses.replace(reply, mentions=mentions)
        limit = self.settings.max_message_chars
        overhead = sum(len(m) + 2 for m in mentions)
        overhead += markdown_overhead(Part("", reply.references))
        queue = [(str(i), p) for i, p in enumerate(plan_parts(reply, limit, overhead=overhead))]
        usable, why = self._webhook_route(delivery)
        route = SESSION_WEBHOOK if usable else OPEN_API
        detail = delivery.detail
        detail.clear()
        detail.update(route=route, parts=0)
        if why:
            detail["why"] = why
        first_id: str | None = None
        while queue:
            path, part = queue.pop(0)
            if len(markdown_text(part)) > limit and len(pieces := split_part(part)) > 1:
                queue[:0] = [(f"{path}.{i}", piece) for i, piece in enumerate(pieces)]
                continue
            key = self._part_key(delivery, path, part)
            if key in self._sent_parts:
                continue  # posted by an earlier attempt of this send
            try:
                route, sent_id = await self._post(client, delivery, part, route)
            except DingTalkError as exc:
                pieces = split_part(part) if exc.code in TOO_LONG_CODES else [part]
                if len(pieces) < 2:
                    raise
                log.info("dingtalk: part %s too long (%d chars): split in two", path, part.size())
                queue[:0] = [(f"{path}.{i}", piece) for i, piece in enumerate(pieces)]
                continue
            self._sent_parts.put(key)
            detail["parts"] += 1
            first_id = first_id or sent_id or None
        log.info(
            "dingtalk: reply to #%d sent by %s (%d part(s))%s",
            delivery.message_id,
            route,
            detail["parts"],
            f": {detail['why']}" if "why" in detail else "",
        )
        return first_id

    def _part_key(self, delivery: Delivery, path: str, part: Part) -> str:
        seed = f"{delivery.message_id}|{delivery.in_reply_to}|{path}|{render_markdown(part)}"
        return hashlib.sha256(seed.encode()).hexdigest()

    async def _post(
        self, client: httpx.AsyncClient, delivery: Delivery, part: Part, route: str
    ) -> tuple[str, str]:
        """Post one part; returns the route it took and the platform's id for it, if any."""
        if route == SESSION_WEBHOOK:
            try:
                await self.api.send_by_session(
                    client,
                    str(delivery.raw["session_webhook"]),
                    markdown_title(render_markdown(part)),
                    markdown_text(part),
                    list(part.mentions),
                )
                return route, ""
            except DingTalkError as exc:
                if exc.code not in SESSION_GONE_CODES:
                    raise
                why = f"sessionWebhook refused: code {exc.code}: {exc.message}"
                delivery.detail.update(route=OPEN_API, why=why)
        return OPEN_API, await self._post_by_open_api(client, delivery, part)

    async def _post_by_open_api(
        self, client: httpx.AsyncClient, delivery: Delivery, part: Part
    ) -> str:
        # The open API's markdown cannot @-mention: name the asker instead.
        staff_id, nick = self._asker(delivery)
        named = (nick,) if nick and staff_id in part.mentions else ()
        part = dataclasses.replace(part, mentions=named)
        return await self.api.send_markdown(
            client,
            conversation_id=delivery.conversation_id,
            single_chat_user=self._single_chat_user(delivery),
            title=markdown_title(render_markdown(part)),
            text=markdown_text(part),
        )

    async def _send_card(self, client: httpx.AsyncClient, delivery: Delivery, reply: Reply) -> str:
        """An AI card, created empty, then streamed: the answer grows in steps and is final."""
        staff_id, nick = self._asker(delivery)
        group = delivery.conversation_type == "group"
        whole = Part(reply.text.strip(), reply.references, label=references_heading(reply.text))
        text = render_markdown(whole)
        seed = f"{delivery.message_id}|{delivery.in_reply_to}"
        track = "hxd-" + hashlib.sha256(seed.encode()).hexdigest()[:40]
        key = self.settings.card_content_key
        delivery.detail.clear()
        delivery.detail.update(route=AI_CARD, card=track, updates=0)
        if track not in self._cards:
            at_asker = group and self.settings.at_asker and staff_id
            at = {staff_id: nick or staff_id} if at_asker else {}
            await self.api.create_card(
                client,
                out_track_id=track,
                conversation_id=delivery.conversation_id,
                single_chat_user=self._single_chat_user(delivery),
                at=at,
                params={key: "", "flowStatus": CARD_PROCESSING},
            )
            self._cards.put(track)
        await self.api.update_card(client, track, {"flowStatus": CARD_INPUTING})
        step = max(self.settings.card_step_chars, -(-len(text) // MAX_CARD_UPDATES))
        ends = [*range(step, len(text), step), len(text)]
        for end in ends:
            await self.api.stream_card(
                client,
                track,
                key=key,
                content=text[:end],
                guid=uuid.uuid4().hex,
                final=end == len(text),
            )
            delivery.detail["updates"] += 1
        await self.api.update_card(client, track, {key: text, "flowStatus": CARD_FINISHED})
        log.info(
            "dingtalk: reply to #%d streamed in AI card %s (%d updates)",
            delivery.message_id,
            track,
            len(ends),
        )
        return track

    # -- checks -------------------------------------------------------------------------------

    async def doctor(self) -> list[Finding]:
        """The credentials, by asking DingTalk for an access token."""
        where = self.settings.openapi_endpoint
        try:
            async with self.api.client() as client:
                await self.api.access_token(client)
        except DingTalkError as exc:
            return [
                Finding(
                    "fail",
                    "dingtalk",
                    f"{where} refused the credentials: {exc}. Compare adapters.dingtalk.client_id "
                    "and client_secret (${DINGTALK_CLIENT_SECRET} in the shipped bot.yaml) with "
                    "the Client ID (formerly AppKey) and Client Secret (formerly AppSecret) on "
                    "the app's 凭证与基础信息 (Credentials & Basic Info) page",
                )
            ]
        except (httpx.HTTPError, ValueError) as exc:
            return [
                Finding(
                    "fail",
                    "dingtalk",
                    f"cannot reach {where}: {type(exc).__name__}: {exc} (check the network, or "
                    "adapters.dingtalk.openapi_endpoint)",
                )
            ]
        return [
            Finding(
                "ok",
                "dingtalk",
                f"app {self.settings.client_id} has an access token from {where}; it receives "
                "messages once its robot uses Stream mode, the version is published and the "
                "robot is in the group",
            )
        ]

    def health(self) -> dict[str, Any]:
        connected = self._stream is not None and self._stream.connected()
        return {"status": "ok" if connected else "disconnected", "mode": "stream"}


def _send_error(exc: DingTalkError) -> SendError:
    retryable = (
        exc.code in RATE_LIMIT_CODES
        or exc.code in TOKEN_INVALID_CODES
        or exc.status in (401, 429)
        or (exc.status is not None and exc.status >= 500)
    )
    return SendError(f"dingtalk: {exc}", retryable=retryable)
