"""The adapter contract (tests/contracts/adapter.py) for Feishu, in webhook and websocket mode."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.adapters.feishu.conftest import (
    ENCRYPT_KEY,
    VERIFICATION_TOKEN,
    FeishuBot,
    MakeFeishuBot,
)
from tests.adapters.feishu.fake_feishu import (
    load_event,
    sealed_request,
    signed_headers,
    signed_request,
)
from tests.contracts.adapter import AdapterContract, MakePlatform
from tests.contracts.fuzz import Signed

pytestmark = pytest.mark.integration


@dataclass
class FeishuWebhook:
    """The webhook as Feishu calls it: signed with the encrypt key, events encrypted."""

    app_id: str
    encrypt_key: str = ENCRYPT_KEY
    verification_token: str = VERIFICATION_TOKEN
    path: str = "/feishu/events"
    header_names: list[str] = field(
        default_factory=lambda: [
            "x-lark-request-timestamp",
            "x-lark-request-nonce",
            "x-lark-signature",
        ]
    )

    query_names: list[str] = field(default_factory=list)

    def sign(self, body: bytes) -> Signed:
        return Signed(body, signed_headers(body, self.encrypt_key))

    def seal(self, content: bytes) -> Signed:
        headers, body = sealed_request(content, self.encrypt_key)
        return Signed(body, headers)

    def event(self) -> dict[str, Any]:
        return load_event("text_group.json", app_id=self.app_id, token=self.verification_token)

    def encode(self, event: dict[str, Any]) -> bytes:
        return json.dumps(event).encode()


@dataclass
class FeishuPlatform:
    fb: FeishuBot
    mode: str

    @property
    def webhook(self) -> FeishuWebhook | None:
        return FeishuWebhook(self.fb.fake.app_id) if self.mode == "webhook" else None

    @property
    def secrets(self) -> tuple[str, ...]:
        return (
            self.fb.fake.app_secret,
            ENCRYPT_KEY,
            VERIFICATION_TOKEN,
            self.fb.fake.tenant_token,
        )

    @property
    def bot(self) -> Any:
        return self.fb.bot

    @property
    def limit(self) -> int:
        return self.fb.adapter.settings.max_message_chars + len("References:") + 2

    measure = staticmethod(len)

    def _event(self, text: str, message_id: str) -> dict[str, Any]:
        return load_event(
            "text_group.json",
            app_id=self.fb.fake.app_id,
            token=VERIFICATION_TOKEN,
            text=text,
            message_id=message_id,
        )

    async def deliver(self, text: str, message_id: str) -> None:
        event = self._event(text, message_id)
        if self.mode == "webhook":
            response = await self.fb.post(event)
            assert response.status_code == 200, response.text
            return
        fake = self.fb.fake
        frame_id = await fake.push_event(event)
        await fake.wait_for(lambda: fake.ack_for(frame_id) is not None)
        ack = fake.ack_for(frame_id)
        assert ack is not None and ack["code"] == 200, ack

    def replies(self) -> list[str]:
        return [sent.text() for sent in self.fb.fake.sent]

    def refusals(self) -> Sequence[tuple[str, Callable[[], Awaitable[Any]]]]:
        good = self._event("How do I install mmdet?", "refused-1")

        async def post(body: bytes, headers: dict[str, str], status: int) -> None:
            response = await self.fb.post_raw(body, headers)
            assert response.status_code == status, response.text

        async def forged() -> None:
            await post(*signed_request(good, ENCRYPT_KEY, tamper=True)[::-1], 401)

        async def wrong_key() -> None:
            await post(*signed_request(good, "another-apps-key")[::-1], 401)

        async def not_json() -> None:
            await post(b"{nope", {"Content-Type": "application/json"}, 400)

        async def too_large() -> None:
            body = json.dumps({"encrypt": "A" * (2 << 20)}).encode()
            await post(body, {"Content-Type": "application/json"}, 413)

        async def bot_message() -> None:  # websocket: authentic, but not a person's message
            event = load_event("text_from_bot.json", app_id=self.fb.fake.app_id)
            frame_id = await self.fb.fake.push_event(event)
            await self.fb.fake.wait_for(lambda: self.fb.fake.ack_for(frame_id) is not None)

        if self.mode == "webhook":
            return [
                ("forged signature", forged),
                ("wrong key", wrong_key),
                ("not JSON", not_json),
                ("too large", too_large),
            ]
        return [("a bot's own message", bot_message)]


class TestFeishuWebhookContract(AdapterContract):
    @pytest.fixture
    def platform(self, feishu_bot: MakeFeishuBot) -> MakePlatform:
        async def make(**options: Any) -> FeishuPlatform:
            return FeishuPlatform(await feishu_bot("webhook", **options), "webhook")

        return make


class TestFeishuWebsocketContract(AdapterContract):
    @pytest.fixture
    def platform(self, feishu_bot: MakeFeishuBot) -> MakePlatform:
        async def make(**options: Any) -> FeishuPlatform:
            fb = await feishu_bot("websocket", **options)
            await fb.fake.wait_for(lambda: fb.fake.connected)
            return FeishuPlatform(fb, "websocket")

        return make
