"""The adapter behind `huixiangdou-bot ask`: replies are kept for the command to print."""

from __future__ import annotations

from adapters.base import Adapter, Delivery, Inbox
from bot.message import Reply


class ConsoleAdapter(Adapter):
    name = "cli"

    def __init__(self) -> None:
        self.sent: list[tuple[Delivery, Reply]] = []

    async def start(self, inbox: Inbox) -> None:
        return None

    async def send(self, delivery: Delivery, reply: Reply) -> str | None:
        self.sent.append((delivery, reply))
        return f"cli-{delivery.message_id}"
