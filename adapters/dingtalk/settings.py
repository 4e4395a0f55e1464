"""The ``adapters.dingtalk`` section of bot.yaml."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator, model_validator

from bot.adapter import AdapterSettings

DINGTALK_API = "https://api.dingtalk.com"


class DingTalkSettings(AdapterSettings):
    """A DingTalk app with a robot in Stream mode: ``adapters.dingtalk`` in bot.yaml."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    # Where the stream client asks for its websocket (POST /v1.0/gateway/connections/open), and
    # the open API (access token, robot messages, cards). The SDK reads one fixed address at
    # import; here both come from bot.yaml.
    gateway_endpoint: str = DINGTALK_API
    openapi_endpoint: str = DINGTALK_API
    max_message_chars: int = Field(3500, ge=200, le=6000)
    at_asker: bool = True
    # A sessionWebhook this close to its expiry is not used: the open API is.
    webhook_margin_seconds: float = Field(60, ge=0)
    reconnect_initial_seconds: float = Field(1, gt=0)
    reconnect_max_seconds: float = Field(60, gt=0)
    request_timeout_seconds: float = Field(10, gt=0)
    # AI card streaming of long answers: the id of an AI card template (card platform) with a
    # markdown variable ``card_content_key``; "" sends plain markdown messages.
    card_template_id: str = ""
    card_content_key: str = Field("content", min_length=1)
    card_min_chars: int = Field(800, ge=1)
    card_step_chars: int = Field(300, ge=20)

    @field_validator("gateway_endpoint", "openapi_endpoint")
    @classmethod
    def _origin(cls, value: str) -> str:
        value = value.rstrip("/")
        if not re.fullmatch(r"https?://[^/?#@\s]+", value):
            raise ValueError("expected an origin such as https://api.dingtalk.com (no path)")
        # The client secret is sent there: plain http only to this machine (tests).
        local = re.fullmatch(r"http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?", value)
        if value.startswith("http://") and not local:
            raise ValueError("expected https:// (http:// only for 127.0.0.1 or localhost)")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> DingTalkSettings:
        if self.reconnect_max_seconds < self.reconnect_initial_seconds:
            raise ValueError("reconnect_max_seconds must be at least reconnect_initial_seconds")
        return self
