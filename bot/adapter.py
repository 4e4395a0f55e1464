"""The adapter contract: what every IM platform offers the core, and what the core offers it.

An adapter is a plugin like a middleware: bot.yaml names it under ``adapters:`` by a built-in
short name or a dotted path (``mypkg.im:MyAdapter``); its class brings its own ``Settings``
model, validated from its own ``adapters.<name>`` section, and its own ``doctor`` check.

A built-in short name ``x`` is the ``Adapter`` subclass named ``x`` in ``adapters/x/adapter.py``:
adding a platform touches only its own folder, never this file.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.routing import BaseRoute

from bot.config import Config, ConfigError, format_validation_error
from bot.message import Message, Reply
from bot.plugins import import_object

if TYPE_CHECKING:
    from bot.inbox import Inbox

# Where the built-in adapters live (found by name at run time: the core imports no platform).
BUILTIN_PACKAGE = "adapters"

# The key in Message.raw where an adapter puts the time (ISO 8601, with zone) after which the
# reply target it received expires (DingTalk's sessionWebhook does).
REPLY_EXPIRES_AT = "reply_expires_at"


class SendError(Exception):
    """Sending failed. ``retryable`` says whether the outbox should try again."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class NotSupported(Exception):
    """The platform (or this adapter) cannot do that, e.g. delete a message it posted."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a reply goes: the conversation, the message it answers, and until when the
    platform's reply target for that message is valid (None: it does not expire).

    ``detail`` is the adapter's note for the trace's send step: which route the reply took
    (a reply target or an API that does not expire), what the platform answered. One Delivery
    serves every attempt of a send, so the note says what the last attempt did.
    """

    conversation_id: str
    conversation_type: str
    in_reply_to: str
    message_id: int
    raw: dict[str, Any]
    expires_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def for_message(cls, message: Message, message_id: int) -> Delivery:
        expires = message.raw.get(REPLY_EXPIRES_AT)
        return cls(
            conversation_id=message.conversation_id,
            conversation_type=message.conversation_type,
            in_reply_to=message.platform_message_id,
            message_id=message_id,
            raw=message.raw,
            expires_at=datetime.fromisoformat(expires) if isinstance(expires, str) else None,
        )

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class AdapterSettings(BaseModel):
    """The base of every adapter's settings: unknown keys are errors, like everywhere else."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of `huixiangdou-bot doctor`."""

    level: Literal["ok", "warn", "fail"]
    what: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AdapterEnvironment:
    """What the bot tells every adapter it builds, besides its own settings."""

    work_dir: Path
    config: Config | None = field(default=None, repr=False)


class Adapter(ABC):
    """One IM platform. Receives through the platform SDK, hands Messages to the inbox, acks
    the platform at once, and sends replies back."""

    name: ClassVar[str]
    Settings: ClassVar[type[AdapterSettings]] = AdapterSettings
    # True for the local stand-ins (playground, console): no real platform's users and
    # messages. A real one makes the admin token mandatory (bot/app/console/auth.py).
    simulated: ClassVar[bool] = False

    def __init__(
        self, settings: AdapterSettings, environment: AdapterEnvironment | None = None
    ) -> None:
        self.settings = settings
        self.environment = environment

    @property
    def routes(self) -> list[BaseRoute]:
        """Public HTTP routes this adapter serves on the bot's ASGI app (webhooks), each
        authenticating its own requests (signatures) and bounding its bodies
        (adapters.common.webhook)."""
        return []

    @property
    def admin_routes(self) -> list[BaseRoute]:
        """Routes for the operator (the playground's page and API): served behind the admin
        token, and on ``server.admin_port`` when one is set."""
        return []

    @abstractmethod
    async def start(self, inbox: Inbox) -> None:
        """Start receiving (connect websockets, etc.). Must return quickly."""

    async def stop(self) -> None:  # noqa: B027 - most adapters hold nothing to release
        """Stop receiving and release connections."""

    @abstractmethod
    async def send(self, delivery: Delivery, reply: Reply) -> str | None:
        """Post the reply; return the platform's id for it if there is one. Raise SendError."""

    async def delete(self, conversation_id: str, platform_message_id: str) -> None:
        """Delete a message the bot posted (an admin's ``/hxd forget``). Raise SendError when
        the platform refuses; the default says the platform cannot."""
        raise NotSupported(f"{self.name} cannot delete messages")

    async def doctor(self) -> list[Finding]:
        """Check the credentials and settings against the platform, for `doctor`."""
        return [Finding("ok", self.name, "enabled")]

    def health(self) -> dict[str, Any]:
        """Whether it is connected, for /healthz and the console."""
        return {"status": "ok"}


def builtin_adapters() -> list[str]:
    """The short names of the adapters shipped in adapters/."""
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(
        module.name
        for module in pkgutil.iter_modules(spec.submodule_search_locations)
        if module.ispkg and importlib.util.find_spec(f"{BUILTIN_PACKAGE}.{module.name}.adapter")
    )


def adapter_class(name: str, source: str) -> type[Adapter]:
    """The class for an ``adapters.<name>`` section: built-in by short name, or dotted path."""
    where = f"{source}: adapters.{name}"
    try:
        if ":" in name:
            found = import_object(name)
        elif re.fullmatch(r"[a-z][a-z0-9_]*", name) and name in builtin_adapters():
            module = importlib.import_module(f"{BUILTIN_PACKAGE}.{name}.adapter")
            found = next(
                (
                    value
                    for value in vars(module).values()
                    if isinstance(value, type)
                    and issubclass(value, Adapter)
                    and getattr(value, "name", None) == name
                ),
                None,
            )
        else:
            known = ", ".join(builtin_adapters())
            raise ConfigError(
                f"{where}: unknown adapter (built-ins: {known}; a third-party one is named "
                "'package.module:Class')"
            )
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot load the adapter: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, Adapter)):
        raise ConfigError(f"{where}: {name} does not name an Adapter subclass")
    return found


def adapter_settings(config: Config, name: str) -> tuple[type[Adapter], AdapterSettings]:
    """The adapter class named in bot.yaml and its validated settings."""
    source = str(config.source or "bot.yaml")
    cls = adapter_class(name, source)
    try:
        settings = cls.Settings.model_validate(config.adapters.get(name) or {})
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(source, exc, prefix=f"adapters.{name}")
        ) from None
    return cls, settings


def build_adapters(config: Config) -> list[Adapter]:
    """The adapters enabled in bot.yaml (the playground unless it is turned off). A platform's
    SDK is imported only when its adapter is named."""
    names = list(dict.fromkeys(["playground", *config.adapters]))
    environment = AdapterEnvironment(work_dir=config.work_dir, config=config)
    adapters: list[Adapter] = []
    for name in names:
        cls, settings = adapter_settings(config, name)
        if settings.enabled:
            adapters.append(cls(settings, environment))
    return adapters
