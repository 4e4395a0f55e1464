"""A fake WeCom on 127.0.0.1, written from the platform's documented wire format and independent
of wechatpy: its own AES (``cryptography``), PKCS#7 padding to 32-byte blocks and SHA-1
signatures.

- The API: ``gettoken``, ``message/send``, ``appchat/send`` (access token checked, content
  limited to 2048 UTF-8 bytes, scripted errcodes per attempt), the group robot's
  ``webhook/send?key=`` and the AI bot's single-use ``aibot/response?response_code=``.
- The callback side: ``app_callback`` / ``bot_callback`` / ``url_check`` encrypt and sign what
  WeCom posts to an app's or AI bot's callback URL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.adapters.common import FakeServer

MAX_CONTENT_BYTES = 2048

# -- crypto, as the platform does it ----------------------------------------------------------


def aes_key(encoding_aes_key: str) -> bytes:
    return base64.b64decode(encoding_aes_key + "=")


def encrypt(plaintext: bytes, encoding_aes_key: str, receive_id: str) -> str:
    """AES-256-CBC with the decoded EncodingAESKey, IV its first 16 bytes, over
    16 random bytes + 4-byte big-endian length + message + receive id, padded to 32 bytes."""
    key = aes_key(encoding_aes_key)
    data = os.urandom(16) + struct.pack(">I", len(plaintext)) + plaintext + receive_id.encode()
    pad = 32 - len(data) % 32
    data += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode()


def decrypt(encrypted: str, encoding_aes_key: str) -> tuple[bytes, str]:
    """(message, receive id)."""
    key = aes_key(encoding_aes_key)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    data = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
    data = data[: -data[-1]]
    (length,) = struct.unpack(">I", data[16:20])
    return data[20 : 20 + length], data[20 + length :].decode()


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


@dataclass(frozen=True)
class Keys:
    """One callback's console settings: Token, EncodingAESKey, and the receive id inside every
    ciphertext (the corp id for apps, empty for AI bots)."""

    token: str
    encoding_aes_key: str
    receive_id: str


def random_aes_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()[:43]


def _query(
    keys: Keys, encrypted: str, *, timestamp: float | None, sign_token: str | None, tamper: bool
) -> dict[str, str]:
    stamp = str(int(time.time() if timestamp is None else timestamp))
    nonce = str(int.from_bytes(os.urandom(4), "big"))
    sig = signature(keys.token if sign_token is None else sign_token, stamp, nonce, encrypted)
    if tamper:
        sig = sig[::-1]
    return {"msg_signature": sig, "timestamp": stamp, "nonce": nonce}


def signed_query(keys: Keys, encrypted: str) -> dict[str, str]:
    """msg_signature, timestamp and nonce for a ciphertext (or anything put in its place)."""
    return _query(keys, encrypted, timestamp=None, sign_token=None, tamper=False)


def url_check(keys: Keys, echo: str, **signing: Any) -> dict[str, str]:
    """The GET WeCom sends when the admin saves the callback URL."""
    encrypted = encrypt(echo.encode(), keys.encoding_aes_key, keys.receive_id)
    signing.setdefault("timestamp", None)
    signing.setdefault("sign_token", None)
    signing.setdefault("tamper", False)
    return {**_query(keys, encrypted, **signing), "echostr": encrypted}


def app_callback(
    keys: Keys,
    xml: str,
    *,
    encrypt_with: Keys | None = None,
    timestamp: float | None = None,
    sign_token: str | None = None,
    tamper: bool = False,
) -> tuple[dict[str, str], bytes]:
    """Query and body of an app callback: the message XML encrypted into <Encrypt>.
    ``encrypt_with`` encrypts with other keys (another AES key or corp id) but signs right."""
    sealing = encrypt_with or keys
    encrypted = encrypt(xml.encode(), sealing.encoding_aes_key, sealing.receive_id)
    body = (
        f"<xml><ToUserName><![CDATA[{keys.receive_id}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
        "<AgentID><![CDATA[1000002]]></AgentID></xml>"
    )
    query = _query(keys, encrypted, timestamp=timestamp, sign_token=sign_token, tamper=tamper)
    return query, body.encode()


def bot_callback(
    keys: Keys,
    payload: dict[str, Any],
    *,
    encrypt_with: Keys | None = None,
    timestamp: float | None = None,
    tamper: bool = False,
) -> tuple[dict[str, str], bytes]:
    """Query and body of an AI bot callback: JSON {"encrypt": ...}."""
    sealing = encrypt_with or keys
    plaintext = json.dumps(payload, ensure_ascii=False).encode()
    encrypted = encrypt(plaintext, sealing.encoding_aes_key, sealing.receive_id)
    query = _query(keys, encrypted, timestamp=timestamp, sign_token=None, tamper=tamper)
    return query, json.dumps({"encrypt": encrypted}).encode()


# -- callbacks' plaintext ---------------------------------------------------------------------

_numbers = itertools.count(7_000_000_000_000_000_001)


def msg_id(name: str | None = None) -> str:
    """WeCom's MsgId is a 64-bit integer: a test's name for a message maps to a stable one."""
    if name is None:
        return str(next(_numbers))
    return str(int(hashlib.sha256(name.encode()).hexdigest()[:15], 16))


def text_xml(
    corp_id: str,
    user: str,
    content: str,
    message_id: str,
    *,
    agent_id: int = 1000002,
    chat_id: str = "",
    create_time: int | None = None,
) -> str:
    chat = f"<ChatId><![CDATA[{chat_id}]]></ChatId>" if chat_id else ""
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName>"
        f"<FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{escape(content)}</Content>"
        f"<MsgId>{message_id}</MsgId><AgentID>{agent_id}</AgentID>{chat}</xml>"
    )


def event_xml(
    corp_id: str, user: str, event: str, create_time: int, agent_id: int = 1000002
) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName>"
        f"<FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event><AgentID>{agent_id}</AgentID></xml>"
    )


# -- the server -------------------------------------------------------------------------------


@dataclass
class Sent:
    """A message the bot posted, as the fake received it."""

    kind: str  # "message", "appchat", "webhook" or "response"
    target: str  # user, chat id, robot key or response code
    msg_type: str
    content: str
    mentioned_list: list[str] = field(default_factory=list)
    agent_id: int | None = None


@dataclass
class FakeWeCom(FakeServer):
    corp_id: str
    secret: str
    agent_id: int = 1000002
    other_apps: dict[str, int] = field(default_factory=dict)  # more apps: secret -> agent id
    robot_keys: set[str] = field(default_factory=set)
    port: int = 0
    sent: list[Sent] = field(default_factory=list)
    send_attempts: int = 0
    failures: list[int | None] = field(default_factory=list)  # an errcode per attempt
    token_requests: int = 0
    tokens: list[str] = field(default_factory=list)  # every one handed out
    expired: set[str] = field(default_factory=set)
    response_codes: set[str] = field(default_factory=set)  # handed out, not used yet
    visible_users: set[str] | None = None  # None: every user is in the app's range
    max_content_bytes: int = MAX_CONTENT_BYTES

    def __post_init__(self) -> None:
        self._changed = asyncio.Condition()
        self._token_agent: dict[str, int] = {}
        self.app = Starlette(
            routes=[
                Route("/cgi-bin/gettoken", self._token, methods=["GET"]),
                Route("/cgi-bin/message/send", self._message, methods=["POST"]),
                Route("/cgi-bin/appchat/send", self._appchat, methods=["POST"]),
                Route("/cgi-bin/webhook/send", self._webhook, methods=["POST"]),
                Route("/cgi-bin/aibot/response", self._response, methods=["POST"]),
            ]
        )

    def response_url(self) -> str:
        """A fresh single-use response_url, as an AI bot callback carries."""
        code = os.urandom(12).hex()
        self.response_codes.add(code)
        return f"{self.url}/cgi-bin/aibot/response?response_code={code}"

    def expire_tokens(self) -> None:
        """Every access token handed out so far stops working (42001)."""
        self.expired.update(self.tokens)

    def texts(self) -> list[str]:
        return [sent.content for sent in self.sent]

    # -- API ----------------------------------------------------------------------------------

    @staticmethod
    def _error(code: int, msg: str) -> JSONResponse:
        return JSONResponse({"errcode": code, "errmsg": msg})

    async def _token(self, request: Request) -> JSONResponse:
        self.token_requests += 1
        if request.query_params.get("corpid") != self.corp_id:
            return self._error(40013, "invalid corpid")
        agents = {self.secret: self.agent_id, **self.other_apps}
        agent = agents.get(request.query_params.get("corpsecret", ""))
        if agent is None:
            return self._error(40001, "invalid credential")
        token = "tok-" + os.urandom(12).hex()
        self.tokens.append(token)
        self._token_agent[token] = agent
        return JSONResponse(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
        )

    def _token_problem(self, request: Request) -> JSONResponse | None:
        token = request.query_params.get("access_token", "")
        if token in self.expired:
            return self._error(42001, "access_token expired")
        if token not in self.tokens:
            return self._error(40014, "invalid access_token")
        return None

    def _scripted(self) -> JSONResponse | None:
        self.send_attempts += 1
        code = self.failures.pop(0) if self.failures else None
        if code is not None:
            return self._error(code, "scripted failure")
        return None

    def _content(self, body: dict[str, Any]) -> tuple[str, str, JSONResponse | None]:
        msg_type = str(body.get("msgtype") or "")
        if msg_type not in ("text", "markdown"):
            return msg_type, "", JSONResponse({"errcode": 40008, "errmsg": "invalid msgtype"})
        content = str((body.get(msg_type) or {}).get("content") or "")
        if not content:
            return msg_type, "", JSONResponse({"errcode": 44004, "errmsg": "empty content"})
        if len(content.encode()) > self.max_content_bytes:
            return msg_type, "", JSONResponse({"errcode": 45002, "errmsg": "content too long"})
        return msg_type, content, None

    async def _record(self, sent: Sent, extra: dict[str, Any] | None = None) -> JSONResponse:
        self.sent.append(sent)
        await self._notify()
        return JSONResponse({"errcode": 0, "errmsg": "ok", **(extra or {})})

    async def _message(self, request: Request) -> JSONResponse:
        problem = self._token_problem(request) or self._scripted()
        if problem:
            await self._notify()
            return problem
        body = await request.json()
        if body.get("agentid") != self._token_agent[request.query_params["access_token"]]:
            return self._error(40056, "invalid agentid")
        msg_type, content, refused = self._content(body)
        if refused:
            return refused
        user = str(body.get("touser") or "")
        if self.visible_users is not None and user not in self.visible_users:
            return JSONResponse({"errcode": 0, "errmsg": "ok", "invaliduser": user})
        sent = Sent("message", user, msg_type, content, agent_id=body["agentid"])
        return await self._record(sent, {"invaliduser": "", "msgid": f"msg-{len(self.sent)}"})

    async def _appchat(self, request: Request) -> JSONResponse:
        problem = self._token_problem(request) or self._scripted()
        if problem:
            await self._notify()
            return problem
        body = await request.json()
        msg_type, content, refused = self._content(body)
        if refused:
            return refused
        return await self._record(Sent("appchat", str(body.get("chatid")), msg_type, content))

    async def _webhook(self, request: Request) -> JSONResponse:
        if request.query_params.get("key") not in self.robot_keys:
            return self._error(93000, "invalid webhook url")
        problem = self._scripted()
        if problem:
            await self._notify()
            return problem
        body = await request.json()
        msg_type, content, refused = self._content(body)
        if refused:
            return refused
        mentioned = list((body.get("text") or {}).get("mentioned_list") or [])
        key = request.query_params["key"]
        return await self._record(Sent("webhook", key, msg_type, content, mentioned))

    async def _response(self, request: Request) -> JSONResponse:
        code = request.query_params.get("response_code", "")
        if code not in self.response_codes:
            return self._error(40001, "invalid response_code (used, expired or unknown)")
        body = await request.json()
        if body.get("msgtype") != "markdown":
            return self._error(40008, "invalid msgtype")
        content = str((body.get("markdown") or {}).get("content") or "")
        if len(content.encode()) > 20480:
            return self._error(45002, "content too long")
        self.response_codes.discard(code)
        return await self._record(Sent("response", code, "markdown", content))
