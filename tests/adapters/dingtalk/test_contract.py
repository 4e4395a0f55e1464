"""The adapter contract (tests/contracts/adapter.py) for DingTalk in Stream mode."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from tests.adapters.dingtalk.conftest import DingTalkBot, MakeDingTalkBot
from tests.adapters.dingtalk.fake_dingtalk import BOT_TOPIC
from tests.contracts.adapter import AdapterContract, MakePlatform

pytestmark = pytest.mark.integration


@dataclass
class DingTalkPlatform:
    dt: DingTalkBot

    @property
    def bot(self) -> Any:
        return self.dt.bot

    @property
    def limit(self) -> int:
        return self.dt.adapter.settings.max_message_chars

    measure = staticmethod(len)
    webhook = None  # Stream mode: events arrive over the websocket the bot opened

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.dt.fake.client_secret,)

    async def deliver(self, text: str, message_id: str) -> None:
        ack = await self.dt.deliver(self.dt.fake.message(text=text, msg_id=message_id))
        assert ack["code"] == 200, ack

    def replies(self) -> list[str]:
        return [sent.text for sent in self.dt.fake.sent]

    def refusals(self) -> Sequence[tuple[str, Callable[[], Awaitable[Any]]]]:
        fake = self.dt.fake

        async def callback(data: str) -> None:
            frame_id = await fake.push_frame("CALLBACK", BOT_TOPIC, data)
            await fake.wait_for(lambda: fake.ack_for(frame_id) is not None)
            ack = fake.ack_for(frame_id)
            assert ack is not None and ack["code"] == 400, ack

        async def data_not_json() -> None:
            await callback("{nope")

        async def data_not_an_object() -> None:
            await callback("[1, 2, 3]")

        async def not_a_robot_message() -> None:
            await callback(json.dumps({"msgtype": "text", "text": {"content": "hi"}}))

        async def text_without_its_content() -> None:
            message = fake.message()
            del message["text"]
            await callback(json.dumps(message))

        async def frame_not_json() -> None:
            # Nothing to ack (no messageId): dropped and logged; the connection stays up,
            # as the echo of the next ping on it shows.
            await fake.push_raw("this is not a frame")
            frame_id, _ = await fake.ping()
            await fake.wait_for(lambda: fake.ack_for(frame_id) is not None)
            assert fake.connections == 1

        async def headers_not_an_object() -> None:
            frame = {"type": "CALLBACK", "headers": ["x"], "data": "{}"}
            await fake.push_raw(json.dumps(frame))
            frame_id, _ = await fake.ping()
            await fake.wait_for(lambda: fake.ack_for(frame_id) is not None)
            assert fake.connections == 1

        return [
            ("data that is not JSON", data_not_json),
            ("data that is not an object", data_not_an_object),
            ("data without msgId or conversationId", not_a_robot_message),
            ("a text message without its text", text_without_its_content),
            ("a frame that is not JSON", frame_not_json),
            ("headers that are not an object", headers_not_an_object),
        ]


class TestDingTalkContract(AdapterContract):
    @pytest.fixture
    def platform(self, dingtalk_bot: MakeDingTalkBot) -> MakePlatform:
        async def make(**options: Any) -> DingTalkPlatform:
            return DingTalkPlatform(await dingtalk_bot(**options))

        return make
