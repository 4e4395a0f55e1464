"""Feishu / Lark through lark-oapi: group and p2p messages in, threaded `post` replies out.

Receiving, in one of two modes (``adapters.feishu.mode``):

- ``websocket`` (default, no public URL): ``lark.ws.Client`` in a thread of its own; the SDK
  acks each event frame after our handler returns.
- ``webhook``: a Starlette route checks the timestamp (a replay window the SDK lacks) and the
  signature before anything is decrypted, then the token, with the SDK's own primitives, in a
  worker thread; only an authentic event reaches the SDK's dispatcher. Every refusal gets the
  same answer (adapters.common.webhook), so the webhook is no padding oracle.

Either way the handler runs on an SDK thread and stores the message through the shared
store-then-ack bridge (adapters.common.bridge) before the SDK acks. The inbox's unique key
(platform + message_id) makes redelivery harmless; a small LRU of event ids spares the database
the obvious repeats.

Sending: ``lark.Client`` async calls (``areply`` under the question, in a thread in groups;
``acreate`` when there is nothing to reply to), as `post` rich text with the citations, split
into parts, each with a ``uuid`` derived from our ids so a retried send is not posted twice.
The tenant token is fetched (blocking ``requests`` inside the SDK) in a thread of its own, one
fetch at a time shared by every waiting send, and handed to each call, so the SDK never fetches
one on the event loop and a slow token endpoint cannot starve anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import lark_oapi as lark
import lark_oapi.ws.client as lark_ws_client
import requests
from lark_oapi.api.im.v1 import (
    CreateMessageRequest,
    CreateMessageRequestBody,
    DeleteMessageRequest,
    P2ImMessageReactionCreatedV1,
    P2ImMessageReceiveV1,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)
from lark_oapi.core.exception import EventException, ObtainAccessTokenException
from lark_oapi.core.token import TokenManager
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters.common.bridge import RecentMap, StoreBridge, StoreFailed
from adapters.common.parts import Part, plan_parts, split_part
from adapters.common.webhook import (
    BAD_REQUEST,
    TOO_LARGE,
    UNAUTHORIZED,
    UNAVAILABLE,
    BodyTooLarge,
    RefusalLog,
    read_body,
    refusal,
    stale_timestamp,
)
from adapters.feishu.format import (
    RATE_LIMIT_CODES,
    TOKEN_INVALID_CODES,
    TOO_LONG_CODES,
    Malformed,
    Skipped,
    parse_message_event,
    parse_reaction_event,
    post_content,
)
from adapters.feishu.settings import FeishuSettings
from bot.adapter import Adapter, AdapterEnvironment, Delivery, Finding, SendError
from bot.message import Reply

if TYPE_CHECKING:
    from bot.inbox import Inbox

log = logging.getLogger(__name__)

BOT_INFO_URI = "/open-apis/bot/v3/info"
# Webhook handlers block while the inbox stores the event: a pool of their own, so a burst of
# callbacks cannot starve anything else.
WEBHOOK_THREADS = 8
SEEN_EVENTS = 4096
KNOWN_TEXTS = 2048

# The SDK's websocket client schedules everything on one module-level loop: only one of them
# can run per process.
_websocket_lock = threading.Lock()


class MalformedEvent(Exception):
    """An authentic event the adapter cannot read (ids of the wrong type...): refused with 400
    in webhook mode, acknowledged and dropped in websocket mode (or Feishu redelivers it
    forever); logged once either way."""


class FeishuError(Exception):
    """The open API said no, with its code and message."""

    def __init__(self, what: str, code: int | None, msg: str, status: int | None = None):
        super().__init__(f"{what}: code {code}: {msg}" + (f" (HTTP {status})" if status else ""))
        self.code = code
        self.status = status


def _recase(name: str) -> str:
    """ASGI lower-cases header names; the SDK looks up 'X-Lark-Signature' and friends."""
    return "-".join(word.capitalize() for word in name.split("-"))


class FeishuAdapter(Adapter):
    name = "feishu"
    Settings = FeishuSettings
    settings: FeishuSettings

    def __init__(
        self, settings: FeishuSettings, environment: AdapterEnvironment | None = None
    ) -> None:
        super().__init__(settings, environment)
        self.client = (
            lark.Client.builder()
            .app_id(settings.app_id)
            .app_secret(settings.app_secret.get_secret_value())
            .domain(settings.domain)
            .timeout(settings.request_timeout_seconds)
            .log_level(lark.LogLevel.WARNING)
            .enable_set_token(True)  # we fetch the token (see _tenant_token) and pass it in
            .build()
        )
        self.dispatcher = (
            lark.EventDispatcherHandler.builder(
                settings.encrypt_key.get_secret_value(),
                settings.verification_token.get_secret_value(),
            )
            .register_p2_im_message_receive_v1(self._on_message_event)
            .register_p2_im_message_reaction_created_v1(self._on_reaction_event)
            .build()
        )
        self._positive = frozenset(r.upper() for r in settings.positive_reactions)
        self._negative = frozenset(r.upper() for r in settings.negative_reactions)
        self.bot_open_id: str | None = None
        self.bot_name = ""
        self._bridge = StoreBridge(self.name)
        self._seen_events = RecentMap(SEEN_EVENTS)
        self._texts = RecentMap(KNOWN_TEXTS)  # message id -> text, for quoted replies
        self._log_refusal = RefusalLog(self.name)
        self._websocket: _WebsocketThread | None = None
        self._webhook_pool: ThreadPoolExecutor | None = None
        self._token_pool = ThreadPoolExecutor(1, "feishu-token")
        self._token_fetch: asyncio.Future[str] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def routes(self) -> list[BaseRoute]:
        if self.settings.mode != "webhook":
            return []
        return [Route(self.settings.webhook_path, self.webhook, methods=["POST"])]

    async def start(self, inbox: Inbox) -> None:
        self._bridge.attach(inbox, asyncio.get_running_loop())
        info = await self.bot_info()
        self.bot_open_id = str(info.get("open_id") or "") or None
        self.bot_name = str(info.get("app_name") or "")
        if not self.bot_open_id:
            log.warning("feishu: the bot info has no open_id: @-mentions will not be detected")
        log.info(
            "feishu: bot %r (%s) receiving by %s",
            self.bot_name,
            self.bot_open_id,
            self.settings.mode,
        )
        if self.settings.mode == "webhook":
            self._webhook_pool = ThreadPoolExecutor(WEBHOOK_THREADS, "feishu-webhook")
        if self.settings.mode == "websocket":
            self._websocket = _WebsocketThread(self.settings, self.dispatcher)
            await asyncio.to_thread(self._websocket.start)

    async def stop(self) -> None:
        if self._websocket is not None:
            await asyncio.to_thread(self._websocket.stop)
            self._websocket = None
        if self._webhook_pool is not None:
            self._webhook_pool.shutdown(wait=False, cancel_futures=True)
            self._webhook_pool = None
        self._token_pool.shutdown(wait=False, cancel_futures=True)

    # -- receiving ----------------------------------------------------------------------------

    def _on_message_event(self, data: P2ImMessageReceiveV1) -> None:
        """Called by the SDK on its own thread (websocket loop, or a webhook worker). Raises
        StoreFailed when the inbox could not store the message (the platform must redeliver),
        and in webhook mode MalformedEvent for an event that cannot be read."""
        try:
            envelope = json.loads(lark.JSON.marshal(data) or "{}")
            event_id = str((envelope.get("header") or {}).get("event_id") or "")
            parsed = parse_message_event(envelope, self.bot_open_id, self._texts.get)
        except Exception as exc:  # garbage the SDK let through: ids of the wrong type...
            parsed, event_id = Malformed(f"{type(exc).__name__}: {exc}"[:200]), ""
        if isinstance(parsed, Malformed):
            self._malformed(parsed.reason)
            return
        if event_id and event_id in self._seen_events:
            log.debug("feishu: event %s seen already", event_id)
            return
        if isinstance(parsed, Skipped):
            log.info("feishu: event %s skipped: %s", event_id or "?", parsed.reason)
        else:
            if parsed.text:
                self._texts.put(parsed.platform_message_id, parsed.text)
            self._bridge.store(parsed)  # StoreFailed: the SDK (websocket) or we (webhook) say so
        if event_id:
            self._seen_events.put(event_id)

    def _on_reaction_event(self, data: P2ImMessageReactionCreatedV1) -> None:
        """A reaction to a message: feedback when it is a thumbs up or down on the bot's.
        Raises like ``_on_message_event``."""
        try:
            envelope = json.loads(lark.JSON.marshal(data) or "{}")
            event_id = str((envelope.get("header") or {}).get("event_id") or "")
            parsed = parse_reaction_event(envelope, self._positive, self._negative)
        except Exception as exc:
            self._malformed(f"a reaction: {type(exc).__name__}: {exc}"[:200])
            return
        if event_id and event_id in self._seen_events:
            return
        if isinstance(parsed, Skipped):
            log.debug("feishu: reaction event %s skipped: %s", event_id or "?", parsed.reason)
        else:
            self._bridge.react(parsed)  # StoreFailed: the SDK (websocket) or we (webhook) say so
        if event_id:
            self._seen_events.put(event_id)

    def _malformed(self, reason: str) -> None:
        """An authentic event that cannot be read: refused (400) in webhook mode; acked and
        dropped over the websocket, where an error would make Feishu send it again forever."""
        if self.settings.mode == "webhook":
            raise MalformedEvent(reason)
        log.warning("feishu: dropped an event that cannot be read: %s", reason)

    async def webhook(self, request: Request) -> Response:
        """Event callbacks in webhook mode. Refusals store nothing and say nothing about why:
        400 for a body that is not a JSON object or an authentic event that cannot be read,
        401 for anything that fails authentication, 413 for a body over 1 MiB, 503 when the
        inbox could not store the event (Feishu retries)."""
        try:
            body = await read_body(request)
        except BodyTooLarge as exc:
            self._log_refusal(request, str(exc))
            return refusal(TOO_LARGE)
        if self._webhook_pool is None:
            return refusal(UNAVAILABLE)
        headers = {_recase(key): value for key, value in request.headers.items()}
        loop = asyncio.get_running_loop()
        status, content, reason = await loop.run_in_executor(
            self._webhook_pool, self._handle_webhook, headers, body
        )
        if status == 200:
            return Response(content, media_type="application/json")
        if status != UNAVAILABLE:  # the bridge logged why the inbox did not confirm it
            self._log_refusal(request, reason)
        return refusal(status)

    def _handle_webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        """(status, body, reason for the log). Authenticity is settled before anything is
        decrypted or dispatched. The SDK's ``do()`` is not used: it decrypts first, and logs
        a traceback for every request it refuses."""
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return BAD_REQUEST, b"", "malformed body: not JSON"
        if not isinstance(payload, dict):
            return BAD_REQUEST, b"", "malformed body: not a JSON object"
        event, plaintext, problem = self._authenticate(payload, headers, body)
        if problem:
            return UNAUTHORIZED, b"", problem
        if event.get("type") == "url_verification":
            return 200, json.dumps({"challenge": event.get("challenge")}).encode(), ""
        try:
            self.dispatcher._do_without_validation(plaintext)
        except StoreFailed:
            return UNAVAILABLE, b"", "the inbox could not store the event; Feishu will retry"
        except MalformedEvent as exc:
            return BAD_REQUEST, b"", f"an authentic event that cannot be read: {exc}"
        except EventException:
            # Authentic, but an event type we do not subscribe to.
            return 200, b'{"msg":"ignored"}', ""
        except Exception as exc:
            reason = f"an authentic event that cannot be read: {type(exc).__name__}"
            return BAD_REQUEST, b"", reason
        return 200, b'{"msg":"success"}', ""

    def _authenticate(
        self, payload: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> tuple[dict[str, Any], bytes, str]:
        """(the event, its plaintext, why it is not authentic or ""). Events must be encrypted
        and signed, the signature (checked before anything is decrypted) fresh, the token
        right. Only the console's URL check may come unsigned (and, if typed in by hand,
        plain); it must carry the right token."""
        encrypt_key = self.settings.encrypt_key.get_secret_value()
        stamp = headers.get("X-Lark-Request-Timestamp")
        nonce, signature = headers.get("X-Lark-Request-Nonce"), headers.get("X-Lark-Signature")
        signed = bool(stamp and nonce and signature)
        if signed:
            problem = stale_timestamp(str(stamp), self.settings.replay_window_seconds)
            if problem:
                return {}, b"", problem
            raw = lark.RawRequest()
            raw.headers = headers
            raw.body = body
            try:
                self.dispatcher._verify_sign(raw, encrypt_key)
            except Exception:
                return {}, b"", "bad signature"
        encrypted = isinstance(payload.get("encrypt"), str)
        try:
            plaintext = self.dispatcher._decrypt(body, encrypt_key).encode() if encrypted else body
            event = json.loads(plaintext)
            sent_token = event.get("token") or (event.get("header") or {}).get("token")
            self.dispatcher._verify_token(
                sent_token, self.settings.verification_token.get_secret_value()
            )
        except Exception:
            return {}, b"", "cannot decrypt, or a wrong verification token"
        if event.get("type") == "url_verification":
            return event, plaintext, ""
        if not signed:
            return {}, b"", "an event without a signature"
        if not encrypted:
            return {}, b"", "an event that is not encrypted"
        return event, plaintext, ""

    # -- sending ------------------------------------------------------------------------------

    async def send(self, delivery: Delivery, reply: Reply) -> str | None:
        """Post the reply as one or more `post` messages; the first one's id is returned."""
        parts = plan_parts(reply, self.settings.max_message_chars)
        queue = [(str(i), part) for i, part in enumerate(parts)]
        first_id: str | None = None
        while queue:
            path, part = queue.pop(0)
            try:
                sent_id = await self._send_part(delivery, part, path)
            except FeishuError as exc:
                if exc.code not in TOO_LONG_CODES:
                    raise _send_error(exc) from None
                pieces = split_part(part)
                if len(pieces) < 2:
                    raise SendError(
                        f"feishu: {exc} (cannot split further)", retryable=False
                    ) from None
                log.info("feishu: part %s too long (%d chars): split in two", path, part.size())
                queue[:0] = [(f"{path}.{i}", piece) for i, piece in enumerate(pieces)]
                continue
            first_id = first_id or sent_id
            self._texts.put(sent_id, part.text)
        return first_id

    async def delete(self, conversation_id: str, platform_message_id: str) -> None:
        """Recall a message the bot posted (``/hxd forget``); Feishu allows it for 24 hours."""
        await self._tenant_token()
        request = DeleteMessageRequest.builder().message_id(platform_message_id).build()
        try:
            response: Any = await self.client.im.v1.message.adelete(request)
        except (httpx.HTTPError, ValueError) as exc:
            raise SendError(f"feishu: {type(exc).__name__}: {exc}", retryable=True) from None
        if not response.success():
            status = response.raw.status_code if response.raw is not None else None
            error = FeishuError(
                f"delete {platform_message_id}", response.code, response.msg or "", status
            )
            raise _send_error(error)

    def _uuid(self, delivery: Delivery, path: str, content: str) -> str:
        """Same message, same part, same content: same key, so Feishu drops a resend."""
        seed = f"{delivery.in_reply_to}|{delivery.message_id}|{path}|{content}"
        return "hxd-" + hashlib.sha256(seed.encode()).hexdigest()[:40]

    async def _send_part(self, delivery: Delivery, part: Part, path: str) -> str:
        content = json.dumps(post_content(part), ensure_ascii=False)
        uuid = self._uuid(delivery, path, content)
        option = lark.RequestOption.builder().tenant_access_token(await self._tenant_token())
        try:
            if delivery.in_reply_to:
                in_thread = self.settings.reply_in_thread and delivery.conversation_type == "group"
                reply_request = (
                    ReplyMessageRequest.builder()
                    .message_id(delivery.in_reply_to)
                    .request_body(
                        ReplyMessageRequestBody.builder()
                        .msg_type("post")
                        .content(content)
                        .reply_in_thread(in_thread)
                        .uuid(uuid)
                        .build()
                    )
                    .build()
                )
                response: Any = await self.client.im.v1.message.areply(
                    reply_request, option.build()
                )
                what = f"reply to {delivery.in_reply_to}"
            else:
                create_request = (
                    CreateMessageRequest.builder()
                    .receive_id_type("chat_id")
                    .request_body(
                        CreateMessageRequestBody.builder()
                        .receive_id(delivery.conversation_id)
                        .msg_type("post")
                        .content(content)
                        .uuid(uuid)
                        .build()
                    )
                    .build()
                )
                response = await self.client.im.v1.message.acreate(create_request, option.build())
                what = f"message to {delivery.conversation_id}"
        except (httpx.HTTPError, ValueError) as exc:
            # Transport failures, and answers that are not JSON (a proxy's error page).
            raise SendError(f"feishu: {type(exc).__name__}: {exc}", retryable=True) from None
        status = response.raw.status_code if response.raw is not None else None
        if response.code in TOKEN_INVALID_CODES:
            # The SDK would keep handing out the cached token until it expires.
            TokenManager.cache.set(f"self_tenant_token:{self.settings.app_id}", "", 0)
        if not response.success():
            raise FeishuError(what, response.code, response.msg or "", status)
        return str(response.data.message_id if response.data else "")

    async def _tenant_token(self) -> str:
        """The tenant token, cached by the SDK or fetched (blocking ``requests``) in the
        adapter's one token thread. Callers arriving while a fetch is under way share it: one
        request to the platform however many sends wait, and nothing else waits at all."""
        fetch = self._token_fetch
        if fetch is None or fetch.done():
            loop = asyncio.get_running_loop()
            get = functools.partial(TokenManager.get_self_tenant_token, self.client.config)
            fetch = self._token_fetch = loop.run_in_executor(self._token_pool, get)
        try:
            return await asyncio.shield(fetch)
        except ObtainAccessTokenException as exc:
            error = FeishuError("tenant access token", exc.code, exc.msg)
            raise _send_error(error) from None
        except requests.RequestException as exc:
            raise SendError(f"feishu: tenant access token: {exc}", retryable=True) from None

    async def bot_info(self) -> dict[str, Any]:
        """GET /open-apis/bot/v3/info: the bot's open_id (for @-mentions) and name."""
        try:
            token = await self._tenant_token()
            request = (
                lark.BaseRequest.builder()
                .http_method(lark.HttpMethod.GET)
                .uri(BOT_INFO_URI)
                .token_types({lark.AccessTokenType.TENANT})
                .build()
            )
            option = lark.RequestOption.builder().tenant_access_token(token).build()
            response = await self.client.arequest(request, option)
            body = json.loads(response.raw.content or b"{}")
        except (SendError, httpx.HTTPError, ValueError) as exc:
            where = self.settings.domain
            raise RuntimeError(f"feishu: cannot get the bot info from {where}: {exc}") from None
        if body.get("code") != 0:
            raise RuntimeError(
                f"feishu: cannot get the bot info: code {body.get('code')}: {body.get('msg')} "
                "(check app_id/app_secret, and that the app has the bot capability)"
            )
        return dict(body.get("bot") or {})

    async def doctor(self) -> list[Finding]:
        """The credentials, by asking Feishu for the bot's own info."""
        where = f"{self.settings.domain} ({self.settings.mode})"
        try:
            info = await self.bot_info()
        except RuntimeError as exc:
            return [Finding("fail", "feishu", str(exc))]
        return [Finding("ok", "feishu", f"bot {info.get('app_name')!r} at {where}")]

    def health(self) -> dict[str, Any]:
        if self.settings.mode == "websocket":
            connected = self._websocket is not None and self._websocket.connected()
            return {"status": "ok" if connected else "disconnected", "mode": "websocket"}
        return {"status": "ok", "mode": "webhook"}


def _send_error(exc: FeishuError) -> SendError:
    retryable = (
        exc.code in RATE_LIMIT_CODES
        or exc.code in TOKEN_INVALID_CODES
        or exc.status == 429
        or (exc.status is not None and exc.status >= 500)
    )
    return SendError(f"feishu: {exc}", retryable=retryable)


class _WebsocketThread:
    """``lark.ws.Client.start()`` blocks forever on the loop the SDK module made at import
    (the core's loop, if it was imported there). Give it a thread and a loop of its own, and
    point the module's loop at it; stopping closes the socket and cancels its tasks."""

    def __init__(self, settings: FeishuSettings, dispatcher: Any) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: Any = None
        self._ready = threading.Event()
        # Set once the SDK's start() has returned (read by _shutdown, on the same loop).
        self._returned = False
        self._thread = threading.Thread(target=self._run, name="feishu-websocket", daemon=True)

    def start(self) -> None:
        if not _websocket_lock.acquire(blocking=False):
            raise RuntimeError("feishu: only one websocket client can run in a process")
        self._thread.start()
        self._ready.wait(timeout=10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        lark_ws_client.loop = loop
        self.loop = loop
        try:
            self.client = lark.ws.Client(
                self.settings.app_id,
                self.settings.app_secret.get_secret_value(),
                event_handler=self.dispatcher,
                domain=self.settings.domain,
                auto_reconnect=True,
                log_level=lark.LogLevel.WARNING,
            )
            self.client.on_reconnecting = lambda: log.warning("feishu: websocket lost")
            self.client.on_reconnected = lambda: log.info("feishu: websocket reconnected")
            self._ready.set()
            self.client.start()
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            log.error("feishu: the websocket client stopped: %s: %s", type(exc).__name__, exc)
        finally:
            self._returned = True
            self._ready.set()
            # Let _shutdown finish closing the socket, then cancel whatever is left.
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            with contextlib.suppress(Exception):
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=3))
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            _websocket_lock.release()

    async def _shutdown(self) -> None:
        """The SDK has no stop(): no reconnecting, cancel its tasks (the receive loop first,
        so closing is not logged as an error), then close the socket politely. Until its
        start() has returned, cancel again what it starts: a stop that comes just as it
        connects would otherwise leave its ping loop and idle wait running for ever (and the
        process's one websocket client taken)."""
        client = self.client
        if client is not None:
            client._auto_reconnect = False
        closed = False
        while not self._returned:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            connection = client._conn if client is not None else None
            if connection is not None and not closed:
                closed = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 2)
            await asyncio.sleep(0.05)

    def connected(self) -> bool:
        client = self.client
        return self._thread.is_alive() and client is not None and client._conn is not None

    def stop(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            log.warning("feishu: the websocket thread did not stop in time")
