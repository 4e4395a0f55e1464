"""The adapter contract (tests/contracts/adapter.py) for WeCom: an app's single chat
(message/send), a group chat the app created (appchat/send), and an AI bot in an ordinary
group answered through that group's robot (webhook/send). Limit: 2048 UTF-8 bytes."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import xmltodict

from adapters.common.split import utf8_size
from tests.adapters.wecom.conftest import APP_CHAT, ROBOT_CHAT, MakeWeComBot, WeComBot
from tests.adapters.wecom.fake_wecom import (
    Keys,
    app_callback,
    bot_callback,
    encrypt,
    msg_id,
    random_aes_key,
    signed_query,
)
from tests.contracts.adapter import AdapterContract, MakePlatform
from tests.contracts.fuzz import Signed

pytestmark = pytest.mark.integration


@dataclass
class WeComCallback:
    """A callback URL as WeCom calls it: signed in the query over the ciphertext, which is in
    <Encrypt> of an XML body (apps) or "encrypt" of a JSON one (AI bots)."""

    wb: WeComBot
    robot: bool
    header_names: list[str] = field(default_factory=list)
    query_names: list[str] = field(
        default_factory=lambda: ["msg_signature", "timestamp", "nonce", "echostr"]
    )

    @property
    def path(self) -> str:
        return urlsplit(self.wb.bot_url if self.robot else self.wb.app_url).path

    @property
    def keys(self) -> Keys:
        return self.wb.bot_keys if self.robot else self.wb.app_keys

    def sign(self, body: bytes) -> Signed:
        text = body.decode("utf-8", "replace")
        found = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>|\"encrypt\": \"(.*?)\"", text)
        encrypted = next((g for g in found.groups() if g is not None), "") if found else text
        return Signed(body, query=signed_query(self.keys, encrypted))

    def seal(self, content: bytes) -> Signed:
        encrypted = encrypt(content, self.keys.encoding_aes_key, self.keys.receive_id)
        if self.robot:
            body = json.dumps({"encrypt": encrypted}).encode()
        else:
            body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
        return Signed(body, query=signed_query(self.keys, encrypted))

    def event(self) -> dict[str, Any]:
        if self.robot:
            return self.wb.bot_payload("How do I install mmdet?", chat_id=ROBOT_CHAT)
        return xmltodict.parse(self.wb.question_xml("How do I install mmdet?"))

    def encode(self, event: dict[str, Any]) -> bytes:
        if self.robot:
            return json.dumps(event).encode()
        root = event["xml"] if set(event) == {"xml"} else event
        fields = _as_xml(root) if isinstance(root, dict) else {"Content": _as_xml(root)}
        return xmltodict.unparse({"xml": fields}).encode()


def _as_xml(value: Any) -> Any:
    """JSON as xmltodict writes it: element names made valid, every leaf a string (XML has no
    other type), a list in a list wrapped in an element."""
    if isinstance(value, dict):
        return {_element_name(k): _as_xml(v) for k, v in value.items()}
    if isinstance(value, list):
        return [{"item": _as_xml(v)} if isinstance(v, list) else _as_xml(v) for v in value]
    return "" if value is None else str(value)


def _element_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


@dataclass
class WeComPlatform:
    wb: WeComBot
    mode: str  # "app", "appchat" or "robot"

    limit = 2048
    measure = staticmethod(utf8_size)

    @property
    def bot(self) -> Any:
        return self.wb.bot

    @property
    def webhook(self) -> WeComCallback:
        return WeComCallback(self.wb, robot=self.mode == "robot")

    @property
    def secrets(self) -> tuple[str, ...]:
        wb = self.wb
        keys = (wb.app_keys, wb.bot_keys)
        return (
            wb.fake.secret,
            wb.robot_key,
            *(k.token for k in keys),
            *(k.encoding_aes_key for k in keys),
        )

    async def deliver(self, text: str, message_id: str) -> None:
        if self.mode == "robot":
            payload = self.wb.bot_payload(text, message_id, chat_id=ROBOT_CHAT)
            response = await self.wb.post_bot(payload)
        else:
            chat = APP_CHAT if self.mode == "appchat" else ""
            response = await self.wb.post_app(
                self.wb.question_xml(text, msg_id(message_id), chat_id=chat)
            )
        assert response.status_code == 200, response.text
        assert response.content == b""

    def replies(self) -> list[str]:
        return self.wb.fake.texts()

    def refusals(self) -> Sequence[tuple[str, Callable[[], Awaitable[Any]]]]:
        wb = self.wb
        if self.mode == "robot":
            url, keys = wb.bot_url, wb.bot_keys
            payload = wb.bot_payload("How do I install mmdet?", chat_id=ROBOT_CHAT)

            def sealed(**signing: Any) -> tuple[dict[str, str], bytes]:
                return bot_callback(keys, payload, **signing)

            malformed = b"{not json"
        else:
            url, keys = wb.app_url, wb.app_keys
            xml = wb.question_xml("How do I install mmdet?")

            def sealed(**signing: Any) -> tuple[dict[str, str], bytes]:
                return app_callback(keys, xml, **signing)

            malformed = b"<xml><Encrypt>unclosed"

        async def post(query: dict[str, str], body: bytes, status: int) -> None:
            response = await wb.post_raw(url, query, body)
            assert response.status_code == status, response.text
            assert response.json() == {"code": status, "msg": response.json()["msg"]}

        async def forged() -> None:
            await post(*sealed(tamper=True), 401)

        async def wrong_aes_key() -> None:
            other = Keys(keys.token, random_aes_key(), keys.receive_id)
            await post(*sealed(encrypt_with=other), 401)

        async def wrong_corp_id() -> None:
            other = Keys(keys.token, keys.encoding_aes_key, "wwsomeoneelse00001")
            await post(*sealed(encrypt_with=other), 401)

        async def stale() -> None:
            await post(*sealed(timestamp=1_600_000_000), 401)

        async def unsigned() -> None:
            await post({}, sealed()[1], 401)

        async def not_the_format() -> None:
            query, _ = sealed()
            await post(query, malformed, 400)

        async def too_large() -> None:
            query, _ = sealed()
            await post(query, b"<xml>" + b"A" * (2 << 20) + b"</xml>", 413)

        return [
            ("forged signature", forged),
            ("wrong EncodingAESKey", wrong_aes_key),
            ("wrong corp id", wrong_corp_id),
            ("stale timestamp", stale),
            ("no signature", unsigned),
            ("malformed body", not_the_format),
            ("too large", too_large),
        ]


class _Contract(AdapterContract):
    mode = ""

    @pytest.fixture
    def platform(self, wecom_bot: MakeWeComBot) -> MakePlatform:
        async def make(**options: Any) -> WeComPlatform:
            return WeComPlatform(await wecom_bot(**options), self.mode)

        return make


class TestWeComAppSingleChatContract(_Contract):
    mode = "app"


class TestWeComAppChatContract(_Contract):
    mode = "appchat"


class TestWeComGroupRobotContract(_Contract):
    mode = "robot"
