"""The adapter behind `huixiangdou-bot ask`: replies are kept for the command to print."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.adapter import Adapter, AdapterSettings, Delivery
from bot.message import Reply

if TYPE_CHECKING:
    from bot.inbox import Inbox


class ConsoleAdapter(Adapter):
    name = "cli"

    def __init__(self) -> None:
        super().__init__(AdapterSettings())
        self.sent: list[tuple[Delivery, Reply]] = []

    async def start(self, inbox: Inbox) -> None:
        return None

    async def send(self, delivery: Delivery, reply: Reply) -> str | None:
        self.sent.append((delivery, reply))
        return f"cli-{delivery.message_id}"
