"""A fake Feishu open platform on 127.0.0.1, written from the platform's documented wire
format and independent of lark-oapi: its own AES (``cryptography``), signatures (``hashlib``)
and protobuf frames (``google.protobuf`` with a schema declared here).

- HTTP open API: tenant token, bot info, reply and create message (recorded, with scripted
  failures and ``uuid`` idempotency), the websocket endpoint ``/callback/ws/endpoint``.
- Websocket gateway ``/ws``: pushes events as ``pbbp2.Frame``s (split into ``sum`` > 1
  fragments on request), answers pings, records acks, and can drop the connection.
- Webhook side: ``signed_request`` encrypts and signs an event the way Feishu posts it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.adapters.common import FakeServer

DATA = Path(__file__).resolve().parents[2] / "data" / "feishu"

# -- crypto, as the platform does it ----------------------------------------------------------


def encrypt(plaintext: bytes, encrypt_key: str) -> str:
    """AES-256-CBC, key sha256(encrypt_key), random IV prepended, PKCS7, base64."""
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(data) + encryptor.finalize()).decode()


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def signed_headers(
    body: bytes, sign_key: str, timestamp: float | None = None, tamper: bool = False
) -> dict[str, str]:
    """The headers Feishu sends with a callback body: timestamp, nonce, signature."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    nonce = base64.b16encode(os.urandom(8)).decode()
    sig = signature(stamp, nonce, sign_key, body)
    if tamper:
        sig = sig[::-1]
    return {
        "Content-Type": "application/json; charset=utf-8",
        "X-Lark-Request-Timestamp": stamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": sig,
        "X-Request-Id": f"req-{nonce}",
    }


def sealed_request(content: bytes, encrypt_key: str) -> tuple[dict[str, str], bytes]:
    """Any plaintext, encrypted and signed as Feishu would post it."""
    body = json.dumps({"encrypt": encrypt(content, encrypt_key)}).encode()
    return signed_headers(body, encrypt_key), body


def signed_request(
    event: dict[str, Any],
    encrypt_key: str,
    *,
    sign_key: str | None = None,
    timestamp: float | None = None,
    tamper: bool = False,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of an encrypted, signed event callback. ``sign_key`` (default: the
    encrypt key) signs; ``tamper`` flips the signature."""
    body = json.dumps({"encrypt": encrypt(json.dumps(event).encode(), encrypt_key)}).encode()
    key = encrypt_key if sign_key is None else sign_key
    return signed_headers(body, key, timestamp, tamper), body


# -- events -----------------------------------------------------------------------------------

_ids = itertools.count(1)


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A recorded callback from tests/data/feishu, with fresh ids unless given."""
    event = json.loads((DATA / name).read_text(encoding="utf-8"))
    if "header" in event:
        n = next(_ids)
        header = event["header"]
        header["event_id"] = overrides.pop("event_id", f"ev-{n}-{os.urandom(4).hex()}")
        header["create_time"] = str(int(time.time() * 1000))
        if "token" in overrides:
            header["token"] = overrides.pop("token")
        if "app_id" in overrides:
            header["app_id"] = overrides.pop("app_id")
        if "message" not in event["event"]:  # not a message: a reaction, for one
            body = event["event"]
            for key in list(overrides):
                if key == "emoji_type":
                    body["reaction_type"]["emoji_type"] = overrides.pop(key)
                elif key in body:
                    body[key] = overrides.pop(key)
            assert not overrides, f"unused overrides: {overrides}"
            return event
        message = event["event"]["message"]
        message["message_id"] = overrides.pop("message_id", f"om_{n}_{os.urandom(6).hex()}")
        message["create_time"] = header["create_time"]
        for key in list(overrides):
            if key in message:
                message[key] = overrides.pop(key)
        if "text" in overrides:
            message["content"] = json.dumps({"text": overrides.pop("text")}, ensure_ascii=False)
        if "bot_open_id" in overrides:
            bot = overrides.pop("bot_open_id")
            for mention in message.get("mentions") or []:
                if mention.get("name") == "HuixiangDou":
                    mention["id"]["open_id"] = bot
    else:
        for key in ("token", "challenge"):
            if key in overrides:
                event[key] = overrides.pop(key)
    assert not overrides, f"unused overrides: {overrides}"
    return event


# -- protobuf frames (schema of pbbp2.Frame, declared independently) --------------------------


def _frame_class() -> Any:
    proto = descriptor_pb2.FileDescriptorProto(
        name="fake_pbbp2.proto", package="fake_pbbp2", syntax="proto2"
    )
    kinds = descriptor_pb2.FieldDescriptorProto
    header = proto.message_type.add(name="Header")
    header.field.add(name="key", number=1, type=kinds.TYPE_STRING, label=kinds.LABEL_REQUIRED)
    header.field.add(name="value", number=2, type=kinds.TYPE_STRING, label=kinds.LABEL_REQUIRED)
    frame = proto.message_type.add(name="Frame")
    for name, number, kind in [
        ("SeqID", 1, kinds.TYPE_UINT64),
        ("LogID", 2, kinds.TYPE_UINT64),
        ("service", 3, kinds.TYPE_INT32),
        ("method", 4, kinds.TYPE_INT32),
    ]:
        frame.field.add(name=name, number=number, type=kind, label=kinds.LABEL_REQUIRED)
    frame.field.add(
        name="headers",
        number=5,
        type=kinds.TYPE_MESSAGE,
        label=kinds.LABEL_REPEATED,
        type_name=".fake_pbbp2.Header",
    )
    for name, number, kind in [
        ("payload_encoding", 6, kinds.TYPE_STRING),
        ("payload_type", 7, kinds.TYPE_STRING),
        ("payload", 8, kinds.TYPE_BYTES),
        ("LogIDNew", 9, kinds.TYPE_STRING),
    ]:
        frame.field.add(name=name, number=number, type=kind, label=kinds.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fake_pbbp2.Frame"))


Frame = _frame_class()
METHOD_CONTROL, METHOD_DATA = 0, 1
SERVICE_ID = 7


def make_frame(method: int, headers: dict[str, str], payload: bytes = b"", seq: int = 0) -> Any:
    frame = Frame(SeqID=seq, LogID=seq, service=SERVICE_ID, method=method, payload=payload)
    for key, value in headers.items():
        item = frame.headers.add()
        item.key, item.value = key, value
    return frame


def frame_headers(frame: Any) -> dict[str, str]:
    return {h.key: h.value for h in frame.headers}


# -- the server -------------------------------------------------------------------------------


@dataclass
class Sent:
    """A message the bot posted, as the fake received it."""

    kind: str  # "reply" or "create"
    target: str  # the message replied to, or the chat
    msg_type: str
    content: dict[str, Any]
    uuid: str
    reply_in_thread: bool
    message_id: str
    at: float = field(default_factory=time.monotonic)  # when the fake received it

    def text(self) -> str:
        """The post flattened: paragraphs on lines, elements joined."""
        lines = []
        for paragraph in self.content["zh_cn"]["content"]:
            parts = []
            for element in paragraph:
                if element["tag"] == "a":
                    parts.append(f"{element['text']} <{element['href']}>")
                elif element["tag"] == "at":
                    parts.append(f"@{element['user_id']}")
                else:
                    parts.append(element.get("text", ""))
            lines.append("".join(parts))
        return "\n".join(lines)


@dataclass
class Failure:
    """A scripted error answer for the next send: HTTP status, Feishu code and message."""

    status: int
    code: int
    msg: str


@dataclass
class FakeFeishu(FakeServer):
    app_id: str
    app_secret: str
    bot_open_id: str = "ou_bot_huixiangdou"
    bot_name: str = "HuixiangDou"
    tenant_token: str = field(default_factory=lambda: "t-" + os.urandom(8).hex())
    max_content_chars: int = 150_000
    port: int = 0
    sent: list[Sent] = field(default_factory=list)
    send_attempts: int = 0
    failures: list[Failure | None] = field(default_factory=list)  # per attempt; None: pass
    token_requests: int = 0
    endpoint_requests: int = 0
    acks: list[dict[str, Any]] = field(default_factory=list)
    ack_times: dict[str, float] = field(default_factory=dict)  # frame id -> perf_counter()
    pings: int = 0
    endpoint_down: bool = False  # /callback/ws/endpoint answers 503, as in an outage
    deleted: list[str] = field(default_factory=list)  # message ids recalled by the bot
    token_hold: asyncio.Event | None = None  # when set, the token endpoint waits for it
    paths: list[str] = field(default_factory=list)  # raw (still encoded) paths of sends

    @classmethod
    def fresh(cls, **options: Any) -> FakeFeishu:
        """With an app id and secret of its own: the SDK caches tenant tokens process-wide by
        app id."""
        app_id, secret = f"cli_{os.urandom(8).hex()}", f"s3cr3t-{os.urandom(16).hex()}"
        return cls(app_id=app_id, app_secret=secret, **options)

    def __post_init__(self) -> None:
        self._by_uuid: dict[str, Sent] = {}
        self._message_ids = itertools.count(1)
        self._socket: WebSocket | None = None
        self._connections = 0
        self._changed = asyncio.Condition()
        api, post = "/open-apis", ["POST"]
        self.app = Starlette(
            routes=[
                Route(f"{api}/auth/v3/tenant_access_token/internal", self._token, methods=post),
                Route(f"{api}/bot/v3/info", self._bot_info, methods=["GET"]),
                # :path, so an id with "/" in it (percent-encoded) still reaches _reply
                Route(
                    f"{api}/im/v1/messages/{{message_id:path}}/reply", self._reply, methods=post
                ),
                Route(f"{api}/im/v1/messages", self._create, methods=["POST"]),
                Route(f"{api}/im/v1/messages/{{message_id}}", self._delete, methods=["DELETE"]),
                Route("/callback/ws/endpoint", self._endpoint, methods=["POST"]),
                WebSocketRoute("/ws", self._gateway),
            ]
        )

    # -- open API -----------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.tenant_token}"

    async def _token(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.token_requests += 1
        await self._notify()
        if self.token_hold is not None:
            await self.token_hold.wait()
        if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            return JSONResponse({"code": 10014, "msg": "app secret invalid"})
        return JSONResponse(
            {"code": 0, "msg": "ok", "tenant_access_token": self.tenant_token, "expire": 7200}
        )

    async def _bot_info(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"code": 99991663, "msg": "Invalid access token"}, 400)
        return JSONResponse(
            {
                "code": 0,
                "msg": "ok",
                "bot": {
                    "activate_status": 2,
                    "app_name": self.bot_name,
                    "avatar_url": "https://example.invalid/avatar.png",
                    "ip_white_list": [],
                    "open_id": self.bot_open_id,
                },
            }
        )

    async def _reply(self, request: Request) -> JSONResponse:
        return await self._send(request, "reply", request.path_params["message_id"])

    async def _create(self, request: Request) -> JSONResponse:
        if request.query_params.get("receive_id_type") != "chat_id":
            return JSONResponse({"code": 230001, "msg": "invalid receive_id_type"}, 400)
        return await self._send(request, "create", "")

    async def _delete(self, request: Request) -> JSONResponse:
        """Recall a message: only one the bot sent, once."""
        if not self._authorized(request):
            return JSONResponse({"code": 99991663, "msg": "Invalid access token"}, 400)
        message_id = request.path_params["message_id"]
        if message_id in self.deleted:
            return JSONResponse({"code": 230011, "msg": "The message is recalled."}, 400)
        if not any(sent.message_id == message_id for sent in self.sent):
            return JSONResponse({"code": 230027, "msg": "Lack of necessary permissions"}, 400)
        self.deleted.append(message_id)
        await self._notify()
        return JSONResponse({"code": 0, "msg": "success", "data": {}})

    async def _send(self, request: Request, kind: str, target: str) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"code": 99991663, "msg": "Invalid access token"}, 400)
        body = await request.json()
        self.send_attempts += 1
        self.paths.append(request.scope["raw_path"].decode("ascii"))
        try:
            failure = self.failures.pop(0) if self.failures else None
            if failure is not None:
                return JSONResponse({"code": failure.code, "msg": failure.msg}, failure.status)
            if body.get("msg_type") != "post":
                return JSONResponse({"code": 230001, "msg": "unexpected msg_type"}, 400)
            content = json.loads(body["content"])
            if len(body["content"]) > self.max_content_chars:
                return JSONResponse(
                    {"code": 230025, "msg": "The length of the message content exceeds the limit"},
                    400,
                )
            uuid = body.get("uuid") or ""
            if uuid and uuid in self._by_uuid:  # idempotent resend: the same message again
                earlier = self._by_uuid[uuid]
                return self._message_response(earlier)
            sent = Sent(
                kind=kind,
                target=target or body.get("receive_id", ""),
                msg_type=body["msg_type"],
                content=content,
                uuid=uuid,
                reply_in_thread=bool(body.get("reply_in_thread")),
                message_id=f"om_reply_{next(self._message_ids)}",
            )
            self.sent.append(sent)
            if uuid:
                self._by_uuid[uuid] = sent
            return self._message_response(sent)
        finally:
            await self._notify()

    def _message_response(self, sent: Sent) -> JSONResponse:
        return JSONResponse(
            {
                "code": 0,
                "msg": "success",
                "data": {
                    "message_id": sent.message_id,
                    "root_id": sent.target,
                    "parent_id": sent.target,
                    "msg_type": sent.msg_type,
                    "create_time": str(int(time.time() * 1000)),
                    "chat_id": "oc_fake",
                    "sender": {"id": "cli_fake", "id_type": "app_id", "sender_type": "app"},
                    "body": {"content": json.dumps(sent.content)},
                },
            }
        )

    # -- websocket gateway --------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.endpoint_requests += 1
        await self._notify()
        if self.endpoint_down:
            return JSONResponse({"code": 1, "msg": "system busy"}, 503)
        if body.get("AppID") != self.app_id or body.get("AppSecret") != self.app_secret:
            return JSONResponse({"code": 403, "msg": "app id or secret is invalid"})
        device = os.urandom(6).hex()
        return JSONResponse(
            {
                "code": 0,
                "msg": "ok",
                "data": {
                    "URL": (
                        f"ws://127.0.0.1:{self.port}/ws?device_id={device}"
                        f"&service_id={SERVICE_ID}&access_key=ak&ticket=tk"
                    ),
                    "ClientConfig": self.client_config(),
                },
            }
        )

    @staticmethod
    def client_config() -> dict[str, int]:
        # Reconnect at once in tests; the real platform says 120 s and a random 0-30 s.
        return {
            "ReconnectCount": -1,
            "ReconnectInterval": 1,
            "ReconnectNonce": 0,
            "PingInterval": 120,
        }

    @property
    def connections(self) -> int:
        return self._connections

    @property
    def connected(self) -> bool:
        return self._socket is not None

    async def _gateway(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self._socket = websocket
        self._connections += 1
        await self._notify()
        try:
            while True:
                data = await websocket.receive_bytes()
                frame = Frame()
                frame.ParseFromString(data)
                headers = frame_headers(frame)
                if frame.method == METHOD_CONTROL and headers.get("type") == "ping":
                    self.pings += 1
                    pong = make_frame(
                        METHOD_CONTROL,
                        {"type": "pong"},
                        json.dumps(self.client_config()).encode(),
                    )
                    await websocket.send_bytes(pong.SerializeToString())
                elif frame.method == METHOD_DATA:
                    self.ack_times[headers.get("message_id", "")] = time.perf_counter()
                    self.acks.append(
                        {
                            "message_id": headers.get("message_id"),
                            "biz_rt": headers.get("biz_rt"),
                            **json.loads(frame.payload or b"{}"),
                        }
                    )
                    await self._notify()
        except WebSocketDisconnect:
            pass
        finally:
            if self._socket is websocket:
                self._socket = None
            await self._notify()

    async def push_event(self, event: dict[str, Any], fragments: int = 1) -> str:
        """Send an event over the websocket, in ``fragments`` frames; returns the frame id."""
        assert self._socket is not None, "no websocket client is connected"
        payload = json.dumps(event, ensure_ascii=False).encode()
        frame_id = "msg-" + os.urandom(6).hex()
        size = -(-len(payload) // fragments)
        for seq in range(fragments):
            piece = payload[seq * size : (seq + 1) * size]
            headers = {
                "type": "event",
                "message_id": frame_id,
                "trace_id": "trace-" + frame_id,
                "sum": str(fragments),
                "seq": str(seq),
            }
            frame = make_frame(METHOD_DATA, headers, piece, seq=seq + 1)
            await self._socket.send_bytes(frame.SerializeToString())
        return frame_id

    def ack_for(self, frame_id: str) -> dict[str, Any] | None:
        return next((a for a in self.acks if a["message_id"] == frame_id), None)

    async def drop(self) -> None:
        """Close the client's websocket from the gateway side, as a gateway restart would."""
        if self._socket is not None:
            socket_, self._socket = self._socket, None
            await socket_.close(code=1001)
            await self._notify()
