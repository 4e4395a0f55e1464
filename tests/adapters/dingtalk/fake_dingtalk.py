"""A fake DingTalk on 127.0.0.1, written from the platform's documented wire format and
independent of dingtalk-stream: its own JSON frames, tickets, sessions and tokens.

- Stream gateway: ``POST /v1.0/gateway/connections/open`` checks the credentials and hands out
  a one-time ticket for the websocket ``/connect``, which pushes CALLBACK frames (robot
  messages), SYSTEM ``ping`` and ``disconnect`` frames and raw text, records every ack, and can
  drop the connection.
- sessionWebhook ``POST /robot/sendBySession?session=...``: a session per delivered message,
  with an expiry (``errcode`` 300001 once it is gone) and the 20000-byte body limit.
- Open API: access token (``/v1.0/oauth2/accessToken``, revocable), robot group and single chat
  messages, AI cards (create and deliver, update, streaming); scripted failures per route.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.adapters.common import FakeServer

DATA = Path(__file__).resolve().parents[2] / "data" / "dingtalk"
BOT_TOPIC = "/v1.0/im/bot/messages/get"
SESSION_TTL_MS = 90 * 60 * 1000  # a sessionWebhook lives about 90 minutes

_ids = itertools.count(1)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Sent:
    """A message the bot posted, as the fake received it."""

    route: str  # "session_webhook", "group" (open API) or "single" (open API)
    conversation_id: str
    title: str
    text: str
    at_user_ids: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)


@dataclass
class Failure:
    """A scripted error answer: HTTP status, DingTalk code and message."""

    status: int
    code: Any
    message: str


@dataclass
class Card:
    template_id: str
    open_space_id: str
    params: dict[str, str]
    at_user_ids: dict[str, str]
    streamed: list[tuple[str, bool]] = field(default_factory=list)  # (content, final)


@dataclass
class FakeDingTalk(FakeServer):
    client_id: str
    client_secret: str
    bot_user_id: str = "$:LWCP_v1:$robotHuixiangDou0001"
    port: int = 0
    sent: list[Sent] = field(default_factory=list)
    send_attempts: int = 0
    webhook_failures: list[Failure | None] = field(default_factory=list)
    openapi_failures: list[Failure | None] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)
    ack_times: dict[str, float] = field(default_factory=dict)  # frame id -> perf_counter()
    cards: dict[str, Card] = field(default_factory=dict)
    token_requests: int = 0
    open_requests: int = 0
    open_down: bool = False  # connections/open answers 503, as in an outage
    subscriptions: list[Any] = field(default_factory=list)

    @classmethod
    def fresh(cls) -> FakeDingTalk:
        """With a client id and secret of its own."""
        client_id, secret = f"ding{os.urandom(8).hex()}", f"s3cr3t-{os.urandom(16).hex()}"
        return cls(client_id=client_id, client_secret=secret)

    def __post_init__(self) -> None:
        self.token = "tok-" + os.urandom(8).hex()
        self._tickets: set[str] = set()
        self._sessions: dict[str, tuple[str, int]] = {}  # session -> (conversation, expiry ms)
        self._socket: WebSocket | None = None
        self._connections = 0
        self._changed = asyncio.Condition()
        api = "/v1.0"
        post, put = ["POST"], ["PUT"]
        self.app = Starlette(
            routes=[
                Route(f"{api}/gateway/connections/open", self._open, methods=post),
                WebSocketRoute("/connect", self._gateway),
                Route("/robot/sendBySession", self._session_webhook, methods=post),
                Route(f"{api}/oauth2/accessToken", self._access_token, methods=post),
                Route(f"{api}/robot/groupMessages/send", self._group_send, methods=post),
                Route(f"{api}/robot/oToMessages/batchSend", self._single_send, methods=post),
                Route(f"{api}/card/instances/createAndDeliver", self._card_create, methods=post),
                Route(f"{api}/card/instances", self._card_update, methods=put),
                Route(f"{api}/card/streaming", self._card_stream, methods=put),
            ]
        )

    # -- robot messages, as DingTalk delivers them ---------------------------------------------

    def open_session(self, conversation_id: str, ttl_ms: int = SESSION_TTL_MS) -> tuple[str, int]:
        """A sessionWebhook for one delivered message: its URL and expiry (epoch ms)."""
        session = os.urandom(16).hex()
        expires = now_ms() + ttl_ms
        self._sessions[session] = (conversation_id, expires)
        return f"{self.url}/robot/sendBySession?session={session}", expires

    def expire_sessions(self) -> None:
        """Every sessionWebhook handed out so far is gone (DingTalk ended the sessions)."""
        self._sessions = {s: (c, 0) for s, (c, _) in self._sessions.items()}

    def message(self, name: str = "text_group.json", **overrides: Any) -> dict[str, Any]:
        """A recorded robot message from tests/data/dingtalk with a fresh msgId, time and
        sessionWebhook; ``text`` replaces the text, ``session_ttl_ms`` the webhook's life."""
        data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
        data["msgId"] = overrides.pop("msg_id", f"msg{next(_ids)}{os.urandom(6).hex()}==")
        data["createAt"] = now_ms()
        data["robotCode"] = self.client_id
        for key in ("conversationId", "conversationType", "senderStaffId", "senderNick"):
            if key in overrides:
                data[key] = overrides.pop(key)
        if "text" in overrides:
            data["text"] = {"content": " " + overrides.pop("text")}
        webhook, expires = self.open_session(
            data["conversationId"], overrides.pop("session_ttl_ms", SESSION_TTL_MS)
        )
        data["sessionWebhook"], data["sessionWebhookExpiredTime"] = webhook, expires
        assert not overrides, f"unused overrides: {overrides}"
        return data

    # -- the stream gateway -------------------------------------------------------------------

    async def _open(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.open_requests += 1
        await self._notify()
        if self.open_down:
            return JSONResponse({"code": "ServiceUnavailable", "message": "system busy"}, 503)
        credentials = (body.get("clientId"), body.get("clientSecret"))
        if credentials != (self.client_id, self.client_secret):
            return _openapi_error(401, "authFailed", "鉴权失败")
        self.subscriptions = body.get("subscriptions") or []
        ticket = os.urandom(12).hex()
        self._tickets.add(ticket)
        return JSONResponse({"endpoint": f"ws://127.0.0.1:{self.port}/connect", "ticket": ticket})

    @property
    def connections(self) -> int:
        return self._connections

    @property
    def connected(self) -> bool:
        return self._socket is not None

    async def _gateway(self, websocket: WebSocket) -> None:
        ticket = websocket.query_params.get("ticket", "")
        if ticket not in self._tickets:
            await websocket.close(code=1008)
            return
        self._tickets.discard(ticket)
        await websocket.accept()
        self._socket = websocket
        self._connections += 1
        await self._notify()
        try:
            while True:
                ack = json.loads(await websocket.receive_text())
                frame_id = (ack.get("headers") or {}).get("messageId", "")
                self.ack_times[frame_id] = time.perf_counter()
                self.acks.append(ack)
                await self._notify()
        except WebSocketDisconnect:
            pass
        finally:
            if self._socket is websocket:
                self._socket = None
            await self._notify()

    def _frame(self, kind: str, topic: str, data: str) -> tuple[str, str]:
        frame_id = f"{kind.lower()}-{os.urandom(8).hex()}"
        frame = {
            "specVersion": "1.0",
            "type": kind,
            "headers": {
                "appId": "app-" + self.client_id,
                "connectionId": f"conn-{self._connections}",
                "contentType": "application/json",
                "messageId": frame_id,
                "time": str(now_ms()),
                "topic": topic,
            },
            "data": data,
        }
        return frame_id, json.dumps(frame, ensure_ascii=False)

    async def push_raw(self, text: str) -> None:
        assert self._socket is not None, "no stream client is connected"
        await self._socket.send_text(text)

    async def push_message(self, data: dict[str, Any]) -> str:
        """A robot message as a CALLBACK frame; returns the frame's messageId."""
        return await self.push_frame("CALLBACK", BOT_TOPIC, json.dumps(data, ensure_ascii=False))

    async def deliver(self, data: dict[str, Any], within: float = 20) -> dict[str, Any]:
        """Push a robot message and return the client's ack, once it came."""
        frame_id = await self.push_message(data)
        await self.wait_for(lambda: self.ack_for(frame_id) is not None, within)
        ack = self.ack_for(frame_id)
        assert ack is not None
        return ack

    async def push_frame(self, kind: str, topic: str, data: str) -> str:
        frame_id, frame = self._frame(kind, topic, data)
        await self.push_raw(frame)
        return frame_id

    async def ping(self) -> tuple[str, dict[str, str]]:
        opaque = {"opaque": os.urandom(8).hex()}
        return await self.push_frame("SYSTEM", "ping", json.dumps(opaque)), opaque

    async def disconnect(self) -> str:
        """The gateway's SYSTEM disconnect: the client is to close and connect again."""
        return await self.push_frame("SYSTEM", "disconnect", json.dumps({"reason": "upgrade"}))

    async def drop(self) -> None:
        """Close the client's websocket from the gateway side, as a crash would."""
        if self._socket is not None:
            socket_, self._socket = self._socket, None
            await socket_.close(code=1011)
            await self._notify()

    def ack_for(self, frame_id: str) -> dict[str, Any] | None:
        return next((a for a in self.acks if a["headers"].get("messageId") == frame_id), None)

    # -- sending: sessionWebhook --------------------------------------------------------------

    async def _session_webhook(self, request: Request) -> JSONResponse:
        raw = await request.body()
        self.send_attempts += 1
        try:
            failure = self.webhook_failures.pop(0) if self.webhook_failures else None
            if failure is not None:
                return JSONResponse(
                    {"errcode": failure.code, "errmsg": failure.message}, failure.status
                )
            session = self._sessions.get(request.query_params.get("session", ""))
            if session is None or now_ms() >= session[1]:
                return JSONResponse({"errcode": 300001, "errmsg": "session 不存在"})
            if len(raw) > 20000:
                return JSONResponse(
                    {"errcode": 460101, "errmsg": "message too long, exceed 20000 bytes"}
                )
            body = json.loads(raw)
            if body.get("msgtype") != "markdown":
                return JSONResponse({"errcode": 400105, "errmsg": "不支持的消息类型"})
            markdown, at = body["markdown"], body.get("at") or {}
            self.sent.append(
                Sent(
                    route="session_webhook",
                    conversation_id=session[0],
                    title=markdown["title"],
                    text=markdown["text"],
                    at_user_ids=list(at.get("atUserIds") or []),
                )
            )
            return JSONResponse({"errcode": 0, "errmsg": "ok"})
        finally:
            await self._notify()

    # -- sending: open API --------------------------------------------------------------------

    def revoke_token(self) -> None:
        """The access token stops working before its time (DingTalk refreshed it)."""
        self.token = "tok-" + os.urandom(8).hex()

    async def _access_token(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.token_requests += 1
        if body.get("appKey") != self.client_id or body.get("appSecret") != self.client_secret:
            return _openapi_error(400, "invalidClientSecret", "应用凭证不正确")
        return JSONResponse({"accessToken": self.token, "expireIn": 7200})

    async def _authorized(self, request: Request) -> tuple[dict[str, Any], JSONResponse | None]:
        """The request's body, or the error to answer with."""
        if request.headers.get("x-acs-dingtalk-access-token") != self.token:
            return {}, _openapi_error(401, "InvalidAuthentication", "不合法的access_token")
        body = await request.json()
        if body.get("robotCode", self.client_id) != self.client_id:
            return {}, _openapi_error(400, "resource.not.found", "robot 不存在")
        return body, None

    def _scripted_failure(self) -> JSONResponse | None:
        """The next scripted open API failure, if any."""
        failure = self.openapi_failures.pop(0) if self.openapi_failures else None
        if failure is None:
            return None
        return _openapi_error(failure.status, failure.code, failure.message)

    async def _robot_send(self, request: Request, route: str) -> JSONResponse:
        body, error = await self._authorized(request)
        self.send_attempts += 1
        try:
            refused = error or self._scripted_failure()
            if refused is not None:
                return refused
            if body.get("msgKey") != "sampleMarkdown":
                return _openapi_error(400, "invalidParameter", "msgKey")
            param = json.loads(body["msgParam"])
            self.sent.append(
                Sent(
                    route=route,
                    conversation_id=body.get("openConversationId", ""),
                    title=param["title"],
                    text=param["text"],
                    user_ids=list(body.get("userIds") or []),
                )
            )
            answer: dict[str, Any] = {"processQueryKey": f"pqk-{len(self.sent)}"}
            if route == "single":
                answer.update(invalidStaffIdList=[], flowControlledStaffIdList=[])
            return JSONResponse(answer)
        finally:
            await self._notify()

    async def _group_send(self, request: Request) -> JSONResponse:
        return await self._robot_send(request, "group")

    async def _single_send(self, request: Request) -> JSONResponse:
        return await self._robot_send(request, "single")

    # -- AI cards -----------------------------------------------------------------------------

    async def _card_create(self, request: Request) -> JSONResponse:
        body, error = await self._authorized(request)
        try:
            refused = error or self._scripted_failure()
            if refused is not None:
                return refused
            deliver = body.get("imGroupOpenDeliverModel") or {}
            self.cards[body["outTrackId"]] = Card(
                template_id=body["cardTemplateId"],
                open_space_id=body["openSpaceId"],
                params=dict(body["cardData"]["cardParamMap"]),
                at_user_ids=dict(deliver.get("atUserIds") or {}),
            )
            return JSONResponse({"success": True, "result": {"outTrackId": body["outTrackId"]}})
        finally:
            await self._notify()

    async def _card_update(self, request: Request) -> JSONResponse:
        body, error = await self._authorized(request)
        if error is not None:
            return error
        card = self.cards.get(body.get("outTrackId", ""))
        if card is None:
            return _openapi_error(404, "card.not.found", "卡片不存在")
        card.params.update(body["cardData"]["cardParamMap"])
        await self._notify()
        return JSONResponse({"success": True, "result": True})

    async def _card_stream(self, request: Request) -> JSONResponse:
        body, error = await self._authorized(request)
        if error is not None:
            return error
        card = self.cards.get(body.get("outTrackId", ""))
        if card is None or not body.get("guid"):
            return _openapi_error(404, "card.not.found", "卡片不存在")
        card.params[body["key"]] = body["content"]
        card.streamed.append((body["content"], bool(body.get("isFinalize"))))
        await self._notify()
        return JSONResponse({"success": True, "result": True})


def _openapi_error(status: int, code: Any, message: str) -> JSONResponse:
    """The open API's error answer: HTTP status, code, message and a request id."""
    return JSONResponse(
        {"code": code, "message": message, "requestid": os.urandom(8).hex().upper()}, status
    )
