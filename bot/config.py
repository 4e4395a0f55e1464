"""`bot.yaml`, parsed once into typed settings.

Every section is a pydantic model with ``extra="forbid"``, so a typo in a key is an error at
start-up rather than a setting that silently does nothing. Strings may use ``${ENV_VAR}`` (or
``${ENV_VAR:-default}``) so secrets stay out of the file; secret fields are ``SecretStr`` and print
as ``**********``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from sqlalchemy.engine import make_url

from bot.llm.tiers import parse_tier
from knowledge.settings import KnowledgeSettings, RejectionSettings

DEFAULT_CONFIG_PATH = Path("bot.yaml")


class ConfigError(Exception):
    """A problem with bot.yaml, worded for the admin who has to fix it."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BotSettings(Section):
    name: str = "HuixiangDou"
    work_dir: Path = Path("work")


class DatabaseSettings(Section):
    url: str = "sqlite:///{work_dir}/bot.db"
    busy_timeout_seconds: float = Field(10.0, gt=0)
    attempts: int = Field(3, ge=1)
    threads: int = Field(4, ge=1)


class QueueSettings(Section):
    max_concurrent_conversations: int = Field(8, ge=1)
    max_pending_per_conversation: int = Field(100, ge=1)
    debounce_seconds: float = Field(1.0, ge=0)
    resume_max_age_minutes: float = Field(30, ge=0)
    stuck_after_seconds: float = Field(300, gt=0)
    sweep_interval_seconds: float = Field(60, gt=0)


class OutboxSettings(Section):
    send_attempts: int = Field(4, ge=1)
    retry_initial_seconds: float = Field(1.0, ge=0)
    retry_max_seconds: float = Field(30.0, ge=0)


def redact_url(url: str) -> str:
    """The URL with a ``user:key@`` part masked (``https://***@host/v1``), for logs, traces,
    doctor and /healthz: a key can hide in either half."""
    return re.sub(r"^([a-zA-Z][\w+.-]*://)[^/?#]*@", r"\1***@", url)


class RemoteLLMSettings(Section):
    """An OpenAI-compatible chat server (bot/llm/openai_compatible.py)."""

    base_url: str = "http://127.0.0.1:8080/v1"
    api_key: SecretStr | None = None
    model: str = ""
    max_context: int = Field(32768, ge=512)
    connect_timeout_seconds: float = Field(5.0, gt=0)
    read_timeout_seconds: float = Field(60.0, gt=0)
    attempts: int = Field(4, ge=1)
    retry_initial_seconds: float = Field(1.0, ge=0)
    retry_max_seconds: float = Field(20.0, ge=0)
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    max_wait_seconds: float = Field(10.0, ge=0)
    tokenizer: Path | None = None
    score_extra_body: dict[str, Any] = Field(default_factory=dict)
    # The 0-10 scoring route of `huixiangdou-bot llm serve` (exact probabilities), or None to
    # ask for a short answer and parse it.
    score_route: str | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http(s) URL such as https://api.deepseek.com/v1")
        return value.rstrip("/")

    @property
    def safe_base_url(self) -> str:
        """base_url with a credential in it (``https://user:key@host/v1``) masked."""
        return redact_url(self.base_url)


class RoutingSettings(Section):
    """Which backend of a hybrid model gets which call (bot/llm/hybrid.py)."""

    scores: Literal["local", "remote"] = "local"
    answers: Literal["auto", "local", "remote"] = "auto"
    local_max_prompt_tokens: int = Field(3072, ge=256)
    fallback: bool = True


class ModelProcessSettings(Section):
    """How the daemon supervises the process that runs the local model (bot/llm/supervisor.py)."""

    start_timeout_seconds: float = Field(300.0, gt=0)
    hang_seconds: float = Field(300.0, gt=0)
    restart_initial_seconds: float = Field(0.5, ge=0)
    restart_max_seconds: float = Field(30.0, ge=0)
    crash_loop_crashes: int = Field(5, ge=1)
    crash_loop_seconds: float = Field(60.0, gt=0)


class LLMSettings(Section):
    backend: Literal["llama_cpp", "openai", "hybrid"] = "llama_cpp"
    model_path: Path | None = None
    # Whether the model writes answers worth posting; None judges by its size
    # (bot/llm/capability.py). Without a capable model the `extract` middleware answers.
    capable: bool | None = None
    tier: str = "cpu"
    n_ctx: int | None = Field(None, ge=256)
    n_threads: int | None = Field(None, ge=1)
    n_gpu_layers: int | None = None
    kv_cache_type: Literal["auto", "f16", "q8_0", "q4_0"] = "auto"
    n_batch: int | None = Field(None, ge=32)
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.2, ge=0, le=2)
    repeat_penalty: float = Field(1.1, ge=0)
    seed: int = 42
    process: ModelProcessSettings = ModelProcessSettings()
    remote: RemoteLLMSettings = RemoteLLMSettings()
    routing: RoutingSettings = RoutingSettings()

    @field_validator("tier", mode="before")
    @classmethod
    def _known_tier(cls, value: Any) -> str:
        return parse_tier(value).name


class PromptSettings(Section):
    dir: Path | None = None


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    # The admin console and the playground's API: on the server above, or on a port of their
    # own. The token opens them (bot/app/console/auth.py says when one is required).
    admin_host: str = "127.0.0.1"
    admin_port: int | None = Field(None, ge=1, le=65535)
    admin_token: SecretStr | None = None
    max_body_bytes: int = Field(1 << 20, ge=1024)

    @property
    def token(self) -> str:
        """The admin token, or "" when none is configured (an empty ${ENV:-} counts as none)."""
        return self.admin_token.get_secret_value() if self.admin_token is not None else ""


class GroupSettings(Section):
    topic: str | None = None
    pipeline: list[str] | None = None
    require_mention: bool = False
    # Search only this knowledge.sources collection for this group (None: all of them).
    knowledge_collection: str | None = None
    # Said instead of silence when someone @-mentions the bot with chitchat or an off-topic
    # message (None: stay silent). On DingTalk every group message the bot gets @-mentions it.
    non_answer: str | None = Field(None, min_length=1, max_length=500)
    # Per-group overrides of middleware settings: merged key by key over ``middleware.<name>``
    # (nested sections too) and validated by the middleware (bot.pipeline.load_middleware).
    middleware: dict[str, dict[str, Any]] = Field(default_factory=dict, repr=False)


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Config(Section):
    bot: BotSettings = BotSettings()
    database: DatabaseSettings = DatabaseSettings()
    queue: QueueSettings = QueueSettings()
    outbox: OutboxSettings = OutboxSettings()
    pipeline: list[str] = Field(default_factory=lambda: ["normalize", "generate"])
    # Raw until each middleware validates its own section (they may hold secrets: never shown).
    middleware: dict[str, dict[str, Any]] = Field(default_factory=dict, repr=False)
    llm: LLMSettings = LLMSettings()
    prompts: PromptSettings = PromptSettings()
    server: ServerSettings = ServerSettings()
    # Each adapter validates its own section (bot.adapter.build_adapters): the core lists
    # no platform.
    adapters: dict[str, dict[str, Any]] = Field(default_factory=dict, repr=False)
    groups: dict[str, GroupSettings] = Field(default_factory=dict)
    logging: LoggingSettings = LoggingSettings()
    rejection: RejectionSettings = RejectionSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    source: Path | None = Field(None, exclude=True)
    # The values bot.yaml took from the environment (${VAR}): secrets, as far as we know.
    _environment_values: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("adapters", mode="before")
    @classmethod
    def _sections(cls, value: Any) -> Any:
        # `feishu:` with nothing under it means "on, with the defaults".
        if isinstance(value, dict):
            return {name: {} if section is None else section for name, section in value.items()}
        return value

    @field_validator("pipeline")
    @classmethod
    def _pipeline_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("the pipeline needs at least one middleware")
        return value

    @property
    def work_dir(self) -> Path:
        return self.bot.work_dir

    @property
    def database_url(self) -> str:
        return self.database.url.replace("{work_dir}", str(self.work_dir))

    def group(self, conversation_id: str) -> GroupSettings:
        return self.groups.get(conversation_id, GroupSettings())

    def secret_values(self) -> set[str]:
        """Every value that must never appear in a reply: what bot.yaml took from the
        environment, every secret field, values under secret-sounding keys of the adapters'
        and middlewares' sections, and the database password."""
        found = {v for v in self._environment_values if v.strip()}
        found.update(_secrets_in(self))
        for section in (self.adapters, self.middleware):
            found.update(_secrets_in(section))
        password = make_url(self.database_url).password
        if password:
            found.add(str(password))
        return {value for value in found if len(value) >= 4}


_SECRET_KEY = re.compile(r"secret|password|passwd|token|api_?key|encrypt_?key|credential", re.I)


def _secrets_in(value: Any, key: str = "") -> set[str]:
    """Secret values in a settings tree: SecretStr fields, and strings under secret-sounding
    keys (the raw adapter and middleware sections)."""
    if isinstance(value, SecretStr):
        return {value.get_secret_value()}
    if isinstance(value, BaseModel):
        return {
            s for name in type(value).model_fields for s in _secrets_in(getattr(value, name), name)
        }
    if isinstance(value, dict):
        return {s for k, v in value.items() for s in _secrets_in(v, str(k))}
    if isinstance(value, list | tuple):
        return {s for item in value for s in _secrets_in(item, key)}
    if isinstance(value, str) and _SECRET_KEY.search(key):
        return {value}
    return set()


def merge_settings(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, key by key; nested mappings are merged, not replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, path: str, source: Path, used: list[str]) -> Any:
    """Replace ${VAR} by the environment's value; the values used are added to ``used``."""
    if isinstance(value, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else str(k), source, used)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", source, used) for i, v in enumerate(value)]
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                used.append(os.environ[name])
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{source}: {path}: environment variable {name} is not set "
                f"(export it, or write ${{{name}:-default}} to give a default)"
            )

        return _ENV_PATTERN.sub(replace, value)
    return value


# Keys whose values are never echoed in an error message (they may hold credentials).
_SECRET_KEY = re.compile(r"secret|key|token|password|credential", re.I)


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling against the commented bot.yaml)"
    if kind == "missing":
        return "required key is missing"
    got = error.get("input")
    secret = any(_SECRET_KEY.search(str(part)) for part in error.get("loc", ()))
    if isinstance(got, str):
        got = redact_url(got)  # a URL with a key in it (base_url) must not reach the terminal
    shown = type(got).__name__ if secret or isinstance(got, dict | list) else repr(got)
    return f"{error['msg'].lower()}, got {shown}"


def _key_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def format_validation_error(source: Path | str, error: ValidationError, prefix: str = "") -> str:
    lines = []
    for item in error.errors():
        key = _key_path(tuple(prefix.split(".")) + item["loc"] if prefix else item["loc"])
        lines.append(f"{source}: {key}: {_describe(dict(item))}")
    return "\n".join(lines)


def parse_config(data: Any, source: Path) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    used: list[str] = []
    data = _interpolate(data, "", source, used)
    base = source.parent
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
    # Relative paths in bot.yaml are relative to the file, not to wherever the daemon started.
    bot = config.bot.model_copy(update={"work_dir": (base / config.bot.work_dir)})
    llm = config.llm
    if llm.model_path is not None:
        llm = llm.model_copy(update={"model_path": base / llm.model_path})
    if llm.remote.tokenizer is not None:
        remote = llm.remote.model_copy(update={"tokenizer": base / llm.remote.tokenizer})
        llm = llm.model_copy(update={"remote": remote})
    prompts = config.prompts
    if prompts.dir is not None:
        prompts = prompts.model_copy(update={"dir": base / prompts.dir})
    resolved = config.model_copy(
        update={
            "bot": bot,
            "llm": llm,
            "prompts": prompts,
            "knowledge": config.knowledge.resolve(base),
            "rejection": config.rejection.resolve(base),
            "source": source,
        }
    )
    resolved._environment_values = tuple(used)
    return resolved


def load_config(path: Path | str = DEFAULT_CONFIG_PATH) -> Config:
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{source}: file not found "
            "(pass --config PATH, or run from the folder that holds bot.yaml)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The context mark points at where the broken construct starts (an unclosed bracket),
        # which is where the admin has to look; the problem mark is where the parser gave up.
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
        problem = ": ".join(p for p in parts if p) or str(exc)
        raise ConfigError(f"{source}: {where}invalid YAML: {problem}") from None
    return parse_config(data, source.resolve())


__all__ = ["Config", "ConfigError", "SecretStr", "load_config", "parse_config"]
