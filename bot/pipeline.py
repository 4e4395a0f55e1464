"""The middleware onion: built once from the names in bot.yaml, run once per message.

A middleware is any object with a ``name`` and ``async __call__(ctx, call_next)``. It stops the
message by returning without calling ``call_next`` (usually ``return ctx.ignore("reason")``), or
enriches ``ctx`` and passes it on. Each call is wrapped so that its verdict, score, threshold
and own time (excluding the middlewares inside it) land in ``ctx.trace``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.config import ConfigError, format_validation_error, merge_settings
from bot.context import TraceStep, TurnContext
from bot.message import Reply
from bot.plugins import import_object

if TYPE_CHECKING:
    from bot.services import Services

CallNext = Callable[[TurnContext], Awaitable[Reply | None]]

BUILTIN_MIDDLEWARES: dict[str, str] = {
    "normalize": "bot.middlewares.normalize:Normalize",
    "gate": "bot.middlewares.gate:Gate",
    "guard": "bot.middlewares.guard:Guard",
    "reject.embedding": "bot.middlewares.reject_embedding:RejectEmbedding",
    "reject.llm": "bot.middlewares.reject_llm:RejectLLM",
    "retrieve": "bot.middlewares.retrieve:Retrieve",
    "web_search": "bot.middlewares.web_search:WebSearch",
    "extract": "bot.middlewares.extract:Extract",
    "generate": "bot.middlewares.generate:Generate",
    "verify": "bot.middlewares.verify:Verify",
    "cite": "bot.middlewares.cite:Cite",
}


@runtime_checkable
class Middleware(Protocol):
    name: str

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None: ...


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=BaseModel)


class BaseMiddleware(Generic[OptionsT]):
    """Convenience base: typed options from ``middleware.<name>`` in bot.yaml, and services.

    Subclasses set ``name`` and, if they take settings, an ``Options`` pydantic model.
    """

    name: ClassVar[str] = "middleware"
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, services: Services, options: OptionsT) -> None:
        self.services = services
        self.options = options
        # Options of the groups that override some (``groups.<id>.middleware.<name>``).
        self.group_options: dict[str, OptionsT] = {}

    def options_for(self, ctx: TurnContext) -> OptionsT:
        """This message's group's options: the global ones with its overrides merged in."""
        return self.options_for_group(ctx.message.conversation_id)

    def options_for_group(self, conversation_id: str) -> OptionsT:
        return self.group_options.get(conversation_id, self.options)

    async def warm_up(self) -> None:
        """Load what the middleware needs before the first message (models, indexes)."""

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        raise NotImplementedError


def load_middleware(name: str, services: Services, where: str) -> Middleware:
    """Build one middleware from its bot.yaml name: a built-in short name or a dotted path.

    Its settings come from ``middleware.<entry>`` in bot.yaml, where the entry is the name as
    written in the pipeline or the middleware's own short ``name`` (handy for dotted paths).
    A group may override some of them under ``groups.<id>.middleware.<entry>``: merged over
    the global ones and validated the same way, they reach a ``BaseMiddleware`` as
    ``group_options`` (read with ``options_for(ctx)``).
    """
    source = services.config.source or "bot.yaml"
    spec = BUILTIN_MIDDLEWARES.get(name, name)
    if ":" not in spec:
        known = ", ".join(sorted(BUILTIN_MIDDLEWARES))
        raise ConfigError(
            f"{source}: {where}: unknown middleware {name!r} "
            f"(built-ins: {known}; a third-party one is named 'package.module:Class')"
        )
    try:
        factory = import_object(spec)
    except ImportError as exc:
        raise ConfigError(f"{source}: {where}: cannot load middleware {name!r}: {exc}") from None
    options_model: type[BaseModel] = getattr(factory, "Options", NoOptions)
    settings = services.config.middleware
    short_name = getattr(factory, "name", name)
    key = name if name in settings else short_name
    raw_options = settings.get(key, {})
    try:
        options = options_model.model_validate(raw_options)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(source, exc, prefix=f"middleware.{key}")
        ) from None
    group_options: dict[str, BaseModel] = {}
    for conversation_id, group in services.config.groups.items():
        group_key = name if name in group.middleware else short_name
        if group_key not in group.middleware:
            continue
        prefix = f"groups.{conversation_id}.middleware.{group_key}"
        try:
            group_options[conversation_id] = options_model.model_validate(
                merge_settings(raw_options, group.middleware[group_key])
            )
        except ValidationError as exc:
            raise ConfigError(format_validation_error(source, exc, prefix=prefix)) from None
    middleware = factory(services, options)
    if not isinstance(middleware, Middleware):
        raise ConfigError(
            f"{source}: {where}: {spec} does not build a middleware "
            "(it needs a 'name' and 'async __call__(ctx, call_next)')"
        )
    if group_options:
        if not isinstance(middleware, BaseMiddleware):
            raise ConfigError(
                f"{source}: groups.{next(iter(group_options))}.middleware.{key}: {spec} takes "
                "no per-group settings (only middlewares built on BaseMiddleware do)"
            )
        middleware.group_options = group_options
    return middleware


async def _finish(ctx: TurnContext) -> Reply | None:
    """The centre of the onion: turn what the middlewares produced into a reply, or silence."""
    if ctx.decision is not None:
        return None
    if not ctx.answer or not ctx.answer.strip():
        ctx.decision = "ignored: no-answer"
        return None
    ctx.decision = "answered"
    return Reply(text=ctx.answer.strip(), references=tuple(ctx.references))


async def _traced(middleware: Middleware, call_next: CallNext, ctx: TurnContext) -> Reply | None:
    step = TraceStep(name=middleware.name, verdict="stopped")
    ctx.trace.append(step)
    ctx._open_steps.append(step)
    inner_seconds = 0.0
    inner_error: BaseException | None = None

    async def timed_next(next_ctx: TurnContext) -> Reply | None:
        nonlocal inner_seconds, inner_error
        if step.verdict == "stopped":
            step.verdict = "pass"
        ctx._open_steps.append(_PAUSED)
        started = time.perf_counter()
        try:
            return await call_next(next_ctx)
        except BaseException as exc:
            inner_error = exc  # an inner middleware's error, marked on its own step
            raise
        finally:
            inner_seconds += time.perf_counter() - started
            ctx._open_steps.pop()

    started = time.perf_counter()
    try:
        return await middleware(ctx, timed_next)
    except Exception as exc:
        if exc is not inner_error and step.verdict in ("stopped", "pass"):
            step.verdict = f"error: {type(exc).__name__}: {exc}"
        raise
    finally:
        step.ms = round((time.perf_counter() - started - inner_seconds) * 1000, 3)
        ctx._open_steps.pop()


# While inner middlewares run, ``ctx.step`` must not point at the outer one.
_PAUSED = TraceStep(name="(inner)")


class Pipeline:
    """An ordered, immutable chain of middlewares."""

    def __init__(self, middlewares: list[Middleware]) -> None:
        self.middlewares = list(middlewares)
        handler: CallNext = _finish
        for middleware in reversed(self.middlewares):
            handler = functools.partial(_traced, middleware, handler)
        self._handler = handler

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.middlewares]

    async def warm_up(self) -> None:
        for middleware in self.middlewares:
            warm_up = getattr(middleware, "warm_up", None)
            if warm_up is not None:
                await warm_up()

    async def run(self, ctx: TurnContext) -> Reply | None:
        return await self._handler(ctx)


def build_pipelines(services: Services) -> dict[str, Pipeline]:
    """The default pipeline (key ``""``) and one per group that overrides it, built once."""
    config = services.config
    built: dict[tuple[str, ...], Pipeline] = {}

    def build(names: list[str], where: str) -> Pipeline:
        key = tuple(names)
        if key not in built:
            built[key] = Pipeline(
                [load_middleware(name, services, f"{where}[{i}]") for i, name in enumerate(names)]
            )
        return built[key]

    pipelines = {"": build(config.pipeline, "pipeline")}
    for conversation_id, group in config.groups.items():
        if group.pipeline:
            where = f"groups.{conversation_id}.pipeline"
            pipelines[conversation_id] = build(group.pipeline, where)
    used = {name for names in built for name in names}
    used.update(m.name for pipeline in built.values() for m in pipeline.middlewares)
    unknown = sorted(set(config.middleware) - used)
    if unknown:
        raise ConfigError(
            f"{config.source or 'bot.yaml'}: middleware.{unknown[0]}: settings for a middleware "
            "that is in no pipeline (add it to 'pipeline' or remove these settings)"
        )
    for conversation_id, group in config.groups.items():
        pipeline = pipelines.get(conversation_id, pipelines[""])
        names = {*pipeline.names, *(group.pipeline or config.pipeline)}
        stray = sorted(set(group.middleware) - names)
        if stray:
            raise ConfigError(
                f"{config.source or 'bot.yaml'}: groups.{conversation_id}.middleware.{stray[0]}: "
                "settings for a middleware that is not in this group's pipeline"
            )
    return pipelines
