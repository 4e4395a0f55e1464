"""The ``adapters.feishu`` section of bot.yaml."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from bot.adapter import AdapterSettings


class FeishuSettings(AdapterSettings):
    """A Feishu/Lark self-built app: ``adapters.feishu`` in bot.yaml."""

    app_id: str = Field(min_length=1)
    app_secret: SecretStr
    encrypt_key: SecretStr = SecretStr("")
    verification_token: SecretStr = SecretStr("")
    mode: Literal["websocket", "webhook"] = "websocket"
    webhook_path: str = Field("/feishu/events", pattern=r"^/[\w\-./]*$")
    domain: str = "https://open.feishu.cn"
    replay_window_seconds: float = Field(300, gt=0)
    reply_in_thread: bool = True
    max_message_chars: int = Field(3500, ge=200, le=30000)
    request_timeout_seconds: float = Field(10, gt=0)
    # Reactions (emoji_type) to the bot's answers that count as "right" and as "wrong":
    # feedback that teaches the gate. Others are ignored.
    positive_reactions: list[str] = Field(
        default_factory=lambda: [
            "THUMBSUP", "OK", "DONE", "THANKS", "APPLAUSE", "FINGERHEART", "JIAYI", "CHECKMARK",
        ]
    )  # fmt: skip
    negative_reactions: list[str] = Field(
        default_factory=lambda: ["THUMBSDOWN", "CROSSMARK", "NO", "WRONG"]
    )

    @field_validator("domain")
    @classmethod
    def _origin(cls, value: str) -> str:
        value = value.rstrip("/")
        if not re.fullmatch(r"https?://[^/?#@\s]+", value):
            raise ValueError("expected an origin such as https://open.feishu.cn (no path)")
        # lark-oapi sends the app secret there: plain http only to this machine (tests).
        local = re.fullmatch(r"http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?", value)
        if value.startswith("http://") and not local:
            raise ValueError("expected https:// (http:// only for 127.0.0.1 or localhost)")
        return value

    @model_validator(mode="after")
    def _webhook_needs_keys(self) -> FeishuSettings:
        if self.mode == "webhook" and not (
            self.encrypt_key.get_secret_value() and self.verification_token.get_secret_value()
        ):
            raise ValueError(
                "mode webhook needs encrypt_key and verification_token (Feishu developer "
                "console > Events & Callbacks > Encryption Strategy): without them anyone who "
                "finds the URL can post events"
            )
        return self
