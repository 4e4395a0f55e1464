"""WeCom (企业微信) through wechatpy: app and AI bot callbacks in, app messages, app group chat
messages, group robot webhooks and AI bot response_urls out.

Receiving: each app (``adapters.wecom.apps``) and AI bot (``bots``) has its own callback path on
the bot's HTTP server. WeCom checks the URL with a GET (``WeChatCrypto.check_signature``
returns the decrypted echostr, answered on the event loop at once), then POSTs callbacks: apps
as encrypted XML, AI bots as JSON ``{"encrypt": ...}``. In a worker thread the signature over
token, timestamp, nonce and ciphertext is checked before anything is decrypted (wechatpy's
``decrypt_message`` checks first, then decrypts and checks the corp id), the plaintext is
parsed (``wechatpy.enterprise.parse_message`` for apps) and the Message stored through the
shared store-then-ack bridge; WeCom gets an empty 200 as soon as it is stored, long before its
5-second deadline, and the core answers later. Redelivered callbacks are answered once: the
inbox has a unique key on (platform, app or bot name + MsgId).

Sending, by where the question came from:

- an app's single chat: ``message/send`` to the member (wechatpy's ``WeChatClient``);
- a group chat the app created: ``appchat/send``;
- an AI bot in a chat that has a group robot (``group_robots``): the robot's webhook;
- an AI bot otherwise: its ``response_url``, once (WeCom takes one call per callback).

Answers are split into parts of at most ``max_message_bytes`` UTF-8 bytes (WeCom's 2048), code
blocks and citations kept whole where they fit. A part sent already is not sent again when the
outbox retries the rest (45009 rate limits are retried with backoff). An expired access token
is fetched again once; other errors fail the message with WeCom's errcode in the trace.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import xmltodict
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from wechatpy.enterprise import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException

from adapters.common.bridge import RecentMap, StoreBridge, StoreFailed
from adapters.common.parts import Part, plan_parts, references_heading, split_part
from adapters.common.split import split_text, utf8_size
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
from adapters.wecom.client import RobotClient, WeComClient, WeComError, redact_request_logs
from adapters.wecom.format import (
    RATE_LIMIT_CODES,
    TOO_LONG_CODES,
    Format,
    Skipped,
    markdown_mention,
    parse_app_callback,
    parse_bot_callback,
    render,
)
from adapters.wecom.settings import GroupRobot, WeComApp, WeComBot, WeComSettings
from bot.adapter import Adapter, AdapterEnvironment, Delivery, Finding, SendError
from bot.message import Message, Reply

if TYPE_CHECKING:
    from bot.inbox import Inbox

log = logging.getLogger(__name__)

# Callback handlers wait on the inbox, which stores through the default executor, and API
# calls block on the network: each gets a pool of its own so neither starves the other.
CALLBACK_THREADS = 8
API_THREADS = 4
SENT_PARTS = 4096

Callback = WeComApp | WeComBot
Post = Callable[[str, bool], Awaitable[str]]


class WeComAdapter(Adapter):
    name = "wecom"
    Settings = WeComSettings
    settings: WeComSettings

    def __init__(
        self, settings: WeComSettings, environment: AdapterEnvironment | None = None
    ) -> None:
        super().__init__(settings, environment)
        redact_request_logs()
        # Apps check the corp id inside every ciphertext; AI bots have none ("").
        self.cryptos = {
            app.name: WeChatCrypto(
                app.token.get_secret_value(),
                app.encoding_aes_key.get_secret_value(),
                app.corp_id,
            )
            for app in settings.apps
        } | {
            bot.name: WeChatCrypto(
                bot.token.get_secret_value(), bot.encoding_aes_key.get_secret_value(), ""
            )
            for bot in settings.bots
        }
        self.apps = {app.name: app for app in settings.apps}
        self.clients = {
            app.name: WeComClient(
                app.corp_id,
                app.secret.get_secret_value(),
                settings.api_base_url,
                settings.request_timeout_seconds,
            )
            for app in settings.apps
        }
        self.robots = RobotClient(settings.api_base_url, settings.request_timeout_seconds)
        self._response_url_prefix = f"{settings.api_base_url}/cgi-bin/aibot/response"
        self._bridge = StoreBridge(self.name)
        self._log_refusal = RefusalLog(self.name)
        self._sent_parts = RecentMap(SENT_PARTS)  # parts posted already, skipped on a retry
        self._api_pool = ThreadPoolExecutor(API_THREADS, "wecom-api")
        self._callback_pool: ThreadPoolExecutor | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route(callback.path, self._endpoint(callback), methods=["GET", "POST"])
            for callback in self.settings.callbacks()
        ]

    def _endpoint(self, callback: Callback) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self.callback(callback, request)

        return endpoint

    async def start(self, inbox: Inbox) -> None:
        self._bridge.attach(inbox, asyncio.get_running_loop())
        self._callback_pool = ThreadPoolExecutor(CALLBACK_THREADS, "wecom-callback")
        for callback in self.settings.callbacks():
            kind = "app" if isinstance(callback, WeComApp) else "AI bot"
            log.info("wecom: %s %r receiving at %s", kind, callback.name, callback.path)

    async def stop(self) -> None:
        if self._callback_pool is not None:
            self._callback_pool.shutdown(wait=False, cancel_futures=True)
            self._callback_pool = None
        self._api_pool.shutdown(wait=False, cancel_futures=True)
        for client in self.clients.values():
            client.close()
        await self.robots.close()

    # -- receiving ----------------------------------------------------------------------------

    async def callback(self, callback: Callback, request: Request) -> Response:
        """One callback path. GET: the console's URL check. POST: a message or event.

        Refusals store nothing and say nothing about why: 400 for a body that is not the
        expected XML or JSON, 401 for anything that fails authentication (signature, stale
        timestamp, AES key, corp id), 413 for a body over 1 MiB, 503 when the inbox could not
        store the message (WeCom retries)."""
        if request.method == "GET":
            return self._verify_url(callback, request)
        try:
            body = await read_body(request)
        except BodyTooLarge as exc:
            self._log_refusal(request, str(exc))
            return refusal(TOO_LARGE)
        pool = self._callback_pool
        if pool is None:
            return refusal(UNAVAILABLE)
        query = dict(request.query_params)
        loop = asyncio.get_running_loop()
        status, reason = await loop.run_in_executor(
            pool, self._handle_callback, callback, query, body
        )
        if status == 200:
            return Response(b"", status_code=200)  # what WeCom expects of a callback
        self._log_refusal(request, reason)
        return refusal(status)

    def _verify_url(self, callback: Callback, request: Request) -> Response:
        """Saving the callback URL in the console: decrypt the echostr and send it back as it
        is (WeCom gives this one second)."""
        query = request.query_params
        echostr = query.get("echostr")
        if not echostr:
            self._log_refusal(request, "a GET without echostr")
            return refusal(BAD_REQUEST)
        problem = self._stale(query.get("timestamp", ""))
        if problem:
            self._log_refusal(request, problem)
            return refusal(UNAUTHORIZED)
        try:
            plain = self.cryptos[callback.name].check_signature(
                query.get("msg_signature", ""),
                query.get("timestamp", ""),
                query.get("nonce", ""),
                echostr,
            )
        except InvalidSignatureException:
            self._log_refusal(request, "URL check with a bad signature")
            return refusal(UNAUTHORIZED)
        except Exception:
            self._log_refusal(request, "URL check that does not decrypt (EncodingAESKey, corp id)")
            return refusal(UNAUTHORIZED)
        log.info("wecom: callback URL of %r verified", callback.name)
        return PlainTextResponse(plain)

    def _handle_callback(
        self, callback: Callback, query: dict[str, str], body: bytes
    ) -> tuple[int, str]:
        """(status, reason for the log), in a worker thread. Nothing is decrypted before the
        signature is checked; nothing is stored before it decrypted with the right key."""
        signature, stamp, nonce = (
            query.get(k, "") for k in ("msg_signature", "timestamp", "nonce")
        )
        if not (signature and stamp and nonce):
            return UNAUTHORIZED, "no msg_signature, timestamp or nonce"
        problem = self._stale(stamp)
        if problem:
            return UNAUTHORIZED, problem
        encrypted = _encrypted_field(body, isinstance(callback, WeComApp))
        if encrypted is None:
            kind = "XML with <Encrypt>" if isinstance(callback, WeComApp) else 'JSON {"encrypt"}'
            return BAD_REQUEST, f"malformed body: not {kind}"
        try:
            plain = self.cryptos[callback.name].decrypt_message(
                {"Encrypt": encrypted}, signature, stamp, nonce
            )
        except InvalidSignatureException:
            return UNAUTHORIZED, "bad signature"
        except Exception:
            return UNAUTHORIZED, "cannot decrypt: wrong EncodingAESKey or corp id"
        try:
            message = self._parse(callback, plain)
        except ValueError as exc:
            return BAD_REQUEST, f"an authentic callback we cannot read: {exc}"
        except Exception as exc:  # fields of another type than WeCom sends (a dict for a string)
            return BAD_REQUEST, f"an authentic callback we cannot read: {type(exc).__name__}"
        if isinstance(message, Skipped):
            log.info("wecom: a callback to %r skipped: %s", callback.name, message.reason)
            return 200, ""
        try:
            self._bridge.store(message)
        except StoreFailed:
            return UNAVAILABLE, "the inbox could not store the message; WeCom will retry"
        return 200, ""

    def _parse(self, callback: Callback, plain: str) -> Message | Skipped:
        if isinstance(callback, WeComApp):
            return parse_app_callback(callback.name, plain)
        try:
            payload = json.loads(plain)
        except ValueError:
            raise ValueError("not JSON") from None
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        received = datetime.now(UTC)
        return parse_bot_callback(callback.name, payload, self._response_url_prefix, received)

    def _stale(self, stamp: str) -> str | None:
        return stale_timestamp(stamp, self.settings.replay_window_seconds)

    # -- sending ------------------------------------------------------------------------------

    async def send(self, delivery: Delivery, reply: Reply) -> str | None:
        """Post the reply where the question came from; the first message's id is returned."""
        raw = delivery.raw
        if raw.get("source") == "app":
            app = self.apps.get(str(raw.get("app")))
            if app is None:
                raise SendError(
                    f"wecom: app {raw.get('app')!r} is not configured any more", retryable=False
                )
            return await self._send_app(app, delivery, reply)
        if raw.get("source") == "bot":
            robot = self.settings.robot_for(delivery.conversation_id)
            if robot is not None and raw.get("chat_id"):
                return await self._send_robot(robot, delivery, reply)
            return await self._respond(delivery, reply)
        raise SendError(f"wecom: no way to answer {delivery.in_reply_to}", retryable=False)

    async def _send_app(self, app: WeComApp, delivery: Delivery, reply: Reply) -> str | None:
        client = self.clients[app.name]
        chat_id = str(delivery.raw.get("chat_id") or "")
        user = str(delivery.raw.get("user") or "")
        fmt: Format = app.message_format

        async def post(content: str, first: bool) -> str:
            if chat_id:
                result = await self._api(
                    client,
                    f"appchat/send to {chat_id}",
                    lambda: client.appchat.send(chat_id, fmt, content=content),
                )
                return str(result.get("msgid") or "")
            what = f"message/send to {user}"
            body = {"msgtype": fmt, fmt: {"content": content}}
            result = await self._api(
                client, what, lambda: client.message.send(app.agent_id, user, msg=body)
            )
            # The call succeeds even when the member is outside the app's visible range.
            if user in str(result.get("invaliduser") or "").split("|"):
                raise WeComError(what, 81013, "invaliduser")
            return str(result.get("msgid") or "")

        return await self._send_parts(delivery, reply, fmt, post)

    async def _api(
        self, client: WeComClient, what: str, call: Callable[[], Any]
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._api_pool, client.call, what, call)

    async def _send_robot(self, robot: GroupRobot, delivery: Delivery, reply: Reply) -> str | None:
        """Through the group robot in the question's chat, @-mentioning the asker."""
        user = str(delivery.raw.get("user") or "")
        fmt: Format = robot.message_format
        key = robot.key.get_secret_value()
        mention = f"{markdown_mention(user)}\n" if fmt == "markdown" and user else ""

        async def post(content: str, first: bool) -> str:
            if fmt == "markdown":
                markdown = (mention if first else "") + content
                await self.robots.webhook(
                    key, {"msgtype": "markdown", "markdown": {"content": markdown}}
                )
            else:
                text: dict[str, Any] = {"content": content}
                if first and user:
                    text["mentioned_list"] = [user]
                await self.robots.webhook(key, {"msgtype": "text", "text": text})
            return ""

        return await self._send_parts(delivery, reply, fmt, post, utf8_size(mention))

    async def _send_parts(
        self, delivery: Delivery, reply: Reply, fmt: Format, post: Post, extra: int = 0
    ) -> str | None:
        """The reply as parts within the byte limit, each posted once: a part WeCom took is
        remembered, so the outbox's retry after a failure sends only what is missing."""
        limit = self.settings.max_message_bytes
        parts = plan_parts(reply, limit, utf8_size, extra + _render_overhead(reply, fmt))
        queue = [(str(i), part) for i, part in enumerate(parts)]
        first_id: str | None = None
        while queue:
            path, part = queue.pop(0)
            content = render(part, fmt)
            key = f"{delivery.message_id}:{path}:{hashlib.sha256(content.encode()).hexdigest()}"
            if key in self._sent_parts:
                continue
            first = set(path.split(".")) == {"0"}
            too_long = utf8_size(content) + extra > limit
            if not too_long:
                try:
                    sent_id = await post(content, first)
                except WeComError as exc:
                    if exc.code not in TOO_LONG_CODES:
                        raise _send_error(exc) from None
                    too_long = True
            if too_long:
                pieces = split_part(part, utf8_size)
                if len(pieces) < 2:
                    raise SendError(
                        f"wecom: a part of {utf8_size(content)} bytes cannot be split further",
                        retryable=False,
                    )
                log.info("wecom: part %s too long (%d bytes): split", path, utf8_size(content))
                queue[:0] = [(f"{path}.{i}", piece) for i, piece in enumerate(pieces)]
                continue
            self._sent_parts.put(key)
            first_id = first_id or sent_id or None
        return first_id

    async def _respond(self, delivery: Delivery, reply: Reply) -> str | None:
        """Through the AI bot's response_url: one markdown message, within an hour."""
        url = str(delivery.raw.get("response_url") or "")
        if not url:
            raise SendError(
                "wecom: the AI bot callback had no usable response_url", retryable=False
            )
        if delivery.expired(datetime.now(UTC)):
            raise SendError(
                "wecom: the AI bot's response_url expired (WeCom honours it for an hour)",
                retryable=False,
            )
        key = f"{delivery.message_id}:response_url"
        if key in self._sent_parts:
            return None
        part = one_part(reply, self.settings.bot_max_message_bytes)
        body = {"msgtype": "markdown", "markdown": {"content": render(part, "markdown")}}
        try:
            await self.robots.respond(url, body)
        except WeComError as exc:
            raise _send_error(exc) from None
        self._sent_parts.put(key)
        return None

    # -- checks -------------------------------------------------------------------------------

    async def doctor(self) -> list[Finding]:
        """Each app's credentials (by fetching an access token) and every callback's settings."""
        findings = []
        for app in self.settings.apps:
            what = f"wecom app {app.name}"
            client = self.clients[app.name]
            try:
                await self._api(client, "access token", client.fetch_access_token)
            except WeComError as exc:
                findings.append(Finding("fail", what, f"{exc} (at {self.settings.api_base_url})"))
                continue
            finally:
                client.close()  # doctor's adapter is never stopped: leave no connection open
            findings.append(
                Finding(
                    "ok",
                    what,
                    f"access token for corp {app.corp_id}, agent {app.agent_id} at "
                    f"{self.settings.api_base_url}; {_callback_detail(app)}",
                )
            )
        for bot in self.settings.bots:
            findings.append(Finding("ok", f"wecom AI bot {bot.name}", _callback_detail(bot)))
        for robot in self.settings.group_robots:
            findings.append(
                Finding(
                    "ok",
                    f"wecom group robot for {robot.chat_id}",
                    "key not checked (checking would post into the group)",
                )
            )
        return findings

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "callbacks": {c.name: c.path for c in self.settings.callbacks()},
        }


def _callback_detail(callback: Callback) -> str:
    token = callback.token.get_secret_value()
    return (
        f"callback path {callback.path}, Token of {len(token)} characters, "
        "EncodingAESKey of 43 characters (decodes to an AES-256 key)"
    )


def _encrypted_field(body: bytes, xml: bool) -> str | None:
    """The ciphertext of a callback body: <xml><Encrypt> for apps, {"encrypt"} for AI bots."""
    try:
        if xml:
            document = xmltodict.parse(body)
            value = (document.get("xml") or {}).get("Encrypt")
        else:
            payload = json.loads(body)
            value = payload.get("encrypt") if isinstance(payload, dict) else None
    except Exception:  # expat errors, entity declarations (refused), bad JSON or UTF-8
        return None
    return value if isinstance(value, str) and value else None


def _render_overhead(reply: Reply, fmt: Format) -> int:
    """What rendering adds beyond what plan_parts counts for the references (markup, links,
    line breaks), so a planned part still fits once rendered."""
    if not reply.references:
        return 0
    refs = Part("", reply.references, label=references_heading(reply.text))
    planned = refs.size(utf8_size) + utf8_size(refs.label) + 2
    return max(0, utf8_size(render(refs, fmt)) + 2 - planned)


def one_part(reply: Reply, limit: int) -> Part:
    """The reply as one message (for a reply target that takes one): an answer too long for it
    is shortened at a paragraph or line break, and keeps its references."""
    parts = plan_parts(reply, limit, utf8_size, _render_overhead(reply, "markdown"))
    if len(parts) == 1:
        return parts[0]
    label = parts[0].label
    refs = Part("", reply.references, label=label)
    budget = limit - utf8_size(render(refs, "markdown")) - 16
    text = split_text(reply.text.strip(), max(budget, 64), utf8_size)[0].rstrip()
    log.warning("wecom: an answer of %d bytes shortened to fit one message", utf8_size(reply.text))
    return Part(f"{text}\n\n…", reply.references, label=label)


def _send_error(exc: WeComError) -> SendError:
    status = exc.status
    server_side = status is not None and (status >= 500 or status == 429)
    transport = exc.code is None and status is None
    retryable = exc.code in RATE_LIMIT_CODES or server_side or transport
    return SendError(f"wecom: {exc}", retryable=retryable)
