"""The ``adapters.wecom`` section of bot.yaml: self-built apps, AI bots and group robots.

Several apps and AI bots can share one server: each entry has a ``name`` and its own callback
path (``/wecom/<name>`` unless given), so one bot.yaml lists them all under one section.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bot.adapter import AdapterSettings

NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
PATH = r"^/[\w\-./]*$"
# Paths the bot's own HTTP server uses (/api/... is the playground's): a callback there would
# never be reached.
RESERVED_PATHS = ("/", "/healthz", "/metrics")


def callback_key_problem(token: str, encoding_aes_key: str) -> str | None:
    """What is wrong with a callback's Token and EncodingAESKey as the console gives them, if
    anything. (Checked on the whole entry, so an error never echoes the secret itself.)"""
    if not re.fullmatch(r"[A-Za-z0-9]{3,32}", token):
        return f"token: expected 3 to 32 letters and digits, got {len(token)} characters"
    if not re.fullmatch(r"[A-Za-z0-9+/]{43}", encoding_aes_key):
        return (
            "encoding_aes_key: expected the 43 letters, digits, + and / the console shows, "
            f"got {len(encoding_aes_key)} characters"
        )
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error:
        return "encoding_aes_key: does not decode as base64"
    if len(key) != 32:  # pragma: no cover - 43 base64 characters always make 32 bytes
        return "encoding_aes_key: does not decode to a 32-byte AES key"
    return None


class Callback(BaseModel):
    """What every callback entry has: a name, the console's Token and EncodingAESKey, and the
    path on this server where WeCom posts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME)
    token: SecretStr
    encoding_aes_key: SecretStr
    callback_path: str = Field("", pattern=r"^$|" + PATH)

    @model_validator(mode="after")
    def _keys(self) -> Callback:
        problem = callback_key_problem(
            self.token.get_secret_value(), self.encoding_aes_key.get_secret_value()
        )
        if problem:
            raise ValueError(problem)
        return self

    @property
    def path(self) -> str:
        return self.callback_path or f"/wecom/{self.name}"


class WeComApp(Callback):
    """A self-built app (自建应用) with "Receive messages" (接收消息) set up."""

    corp_id: str = Field(min_length=1)
    agent_id: int = Field(ge=0)
    secret: SecretStr
    message_format: Literal["text", "markdown"] = "text"


class WeComBot(Callback):
    """An AI bot (智能机器人) in API mode: JSON callbacks, answers through its response_url."""


class GroupRobot(BaseModel):
    """A group robot (群机器人 / 消息推送) in an ordinary internal group: answers to questions
    from that chat are posted through its webhook, in as many messages as they need."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chat_id: str = Field(min_length=1)
    key: SecretStr
    message_format: Literal["text", "markdown"] = "markdown"


class WeComSettings(AdapterSettings):
    """WeCom (企业微信): ``adapters.wecom`` in bot.yaml."""

    api_base_url: str = "https://qyapi.weixin.qq.com"
    apps: tuple[WeComApp, ...] = ()
    bots: tuple[WeComBot, ...] = ()
    group_robots: tuple[GroupRobot, ...] = ()
    max_message_bytes: int = Field(2048, ge=256, le=2048)
    bot_max_message_bytes: int = Field(20480, ge=256, le=20480)
    replay_window_seconds: float = Field(300, gt=0)
    request_timeout_seconds: float = Field(10, gt=0)

    @field_validator("api_base_url")
    @classmethod
    def _origin(cls, value: str) -> str:
        value = value.rstrip("/")
        if not re.fullmatch(r"https?://[^/?#@\s]+", value):
            raise ValueError("expected an origin such as https://qyapi.weixin.qq.com (no path)")
        # The app secret travels to it: plain http only to this machine (tests).
        local = re.fullmatch(r"http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?", value)
        if value.startswith("http://") and not local:
            raise ValueError("expected https:// (http:// only for 127.0.0.1 or localhost)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WeComSettings:
        if not self.apps and not self.bots:
            raise ValueError("list at least one app (apps:) or AI bot (bots:) to receive from")
        callbacks: list[Callback] = [*self.apps, *self.bots]
        names = [c.name for c in callbacks]
        paths = [c.path for c in callbacks]
        for what, values in (("name", names), ("callback path", paths)):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"each app and bot needs its own {what}: {repeated} repeated")
        for path in paths:
            if path in RESERVED_PATHS or path.startswith("/api/"):
                raise ValueError(f"callback path {path} is taken by the bot's own HTTP server")
        chats = [robot.chat_id for robot in self.group_robots]
        repeated = sorted({c for c in chats if chats.count(c) > 1})
        if repeated:
            raise ValueError(f"one group robot per chat: {repeated} repeated")
        return self

    def callbacks(self) -> list[WeComApp | WeComBot]:
        return [*self.apps, *self.bots]

    def robot_for(self, chat_id: str) -> GroupRobot | None:
        return next((r for r in self.group_robots if r.chat_id == chat_id), None)
