"""The admin console's pages, server-rendered with jinja2 (templates/ beside this module).

- ``/console/`` the playground: a group chat with the bot, each message with its decision in
  words; ``/console/conversations/{id}`` any stored conversation the same way.
- ``/console/log`` every stored message, filtered and paged from the database.
- ``/console/teach`` and ``/console/examples``: teach the rejection gate, confirm first.
- ``/console/groups`` per group: outcomes per day, feedback, settings as bot.yaml resolves them.
- ``/console/health`` adapters, model, knowledge base, scheduled jobs.

Every route sits behind ``auth.AdminOnly``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from pydantic import BaseModel
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.templating import Jinja2Templates

from bot.app.console import queries
from bot.app.console.auth import COOKIE, AdminAccess, AdminOnly, safe_next, session_value
from bot.app.console.charts import stacked_bars
from bot.app.console.explain import explain
from bot.app.console.teach import Teacher, TeachError, edited
from bot.app.jobs import Jobs
from bot.llm.protocol import ChatModel
from bot.pipeline import BaseMiddleware, Pipeline
from bot.runtime import Bot
from bot.storage import groups, repo
from knowledge.rejection.examples import Examples, ExamplesError
from knowledge.rejection.files import CURVE_FILE, gate_dir
from knowledge.rejection.learned import read_learned

TEMPLATES = Path(__file__).resolve().parent / "templates"
PLAYGROUND = "playground"
CHART_DAYS = 30


def template_environment() -> jinja2.Environment:
    """StrictUndefined: a template naming a missing value fails (in the tests), never renders
    a blank."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["num"] = _num
    env.filters["pretty"] = _pretty
    env.filters["ms"] = _ms
    return env


def _ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:,.0f} ms"


def _pretty(value: Any) -> str:
    """JSON for people: indented, Chinese as it is (the template escapes it for HTML)."""
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


def _when(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def model_state(llm: ChatModel) -> dict[str, Any]:
    """The chat model as the health page shows it. The supervised model process (issue 10)
    reports its state here, as ``process``; until then there is none to show."""
    return {"name": llm.name, "process": None}


def middleware_settings(pipeline: Pipeline, conversation_id: str) -> dict[str, dict[str, Any]]:
    """Each middleware's settings for one group, as bot.yaml and the group's overrides
    (``groups.<id>.middleware``) resolve them; secrets print masked."""
    found: dict[str, dict[str, Any]] = {}
    for middleware in pipeline.middlewares:
        if isinstance(middleware, BaseMiddleware):
            options = middleware.options_for_group(conversation_id)
        else:
            options = getattr(middleware, "options", None)
        if isinstance(options, BaseModel):
            found[middleware.name] = _flat(options)
    return found


def _flat(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    """``{"budget.per_hour": 20, ...}``: nested sections as dotted keys."""
    flat: dict[str, Any] = {}
    for name, value in model:
        if isinstance(value, BaseModel):
            flat.update(_flat(value, f"{prefix}{name}."))
        elif isinstance(value, list | tuple | set):
            flat[prefix + name] = ", ".join(str(v) for v in value) or "(none)"
        else:
            flat[prefix + name] = value
    return flat


def _budget_limit(options: dict[str, dict[str, Any]]) -> int | None:
    """The group's replies per hour, from the gate middleware's budget (None: no limit)."""
    limit = options.get("gate", {}).get("budget.per_hour")
    return limit if isinstance(limit, int) else None


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _positions(values: list[Any]) -> set[int]:
    return {int(v) for v in values if isinstance(v, str) and v.isdigit()}


class Console:
    """The console's routes over one running bot and its scheduled jobs."""

    def __init__(self, bot: Bot, jobs: Jobs | None = None) -> None:
        self.bot = bot
        self.jobs = jobs
        self.config = bot.config
        self.templates = Jinja2Templates(env=template_environment())
        services = bot.services
        self.teacher = Teacher(services.gates, bot.db, self.config.rejection, services.clock)

    @property
    def routes(self) -> list[BaseRoute]:
        access = AdminAccess.decide(self.config.server, self.bot.adapters.values())
        guard = [Middleware(AdminOnly, access=access)]
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/console/login", self.login, methods=["GET", "POST"]),
            Mount(
                "/console",
                routes=[
                    Route("/", self.playground, methods=["GET"]),
                    Route("/conversations/{id:int}", self.conversation, methods=["GET"]),
                    Route("/messages/{id:int}", self.message, methods=["GET"]),
                    Route("/messages/{id:int}/item", self.message_item, methods=["GET"]),
                    Route("/log", self.log, methods=["GET"]),
                    Route("/teach", self.teach, methods=["POST"]),
                    Route("/teach/{token}", self.apply, methods=["POST"]),
                    Route("/examples", self.examples, methods=["GET", "POST"]),
                    Route("/groups", self.groups, methods=["GET"]),
                    Route("/groups/{id:int}", self.group, methods=["GET"]),
                    Route("/health", self.health, methods=["GET"]),
                ],
                middleware=guard,
            ),
            Mount(
                "/api/gate",
                routes=[Route("/curve.png", self.gate_curve, methods=["GET"])],
                middleware=guard,
            ),
        ]

    # -- helpers --------------------------------------------------------------------------

    def page(
        self, request: Request, name: str, status_code: int = 200, **context: Any
    ) -> Response:
        context.setdefault("nav", "")
        context["bot_name"] = self.config.bot.name
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    def items(self, views: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
        return [(view, explain(view)) for view in views]

    @property
    def can_teach(self) -> bool:
        return self.bot.services.gates is not None

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self.bot.db.run(fn, *args, **kwargs)

    # -- entry and login ----------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return RedirectResponse("/console/", status_code=307)

    async def login(self, request: Request) -> Response:
        token = self.config.server.token
        target = safe_next(request.query_params.get("next"))
        if request.method == "GET":
            return self.page(request, "login.html", target=target, error="", enabled=bool(token))
        form = await request.form()
        given = str(form.get("token", ""))
        target = safe_next(str(form.get("next", "")))
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            error = "wrong token" if token else "no admin token is configured"
            return self.page(
                request, "login.html", 401, target=target, error=error, enabled=bool(token)
            )
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            session_value(token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    # -- chat views ---------------------------------------------------------------------

    async def playground(self, request: Request) -> Response:
        """The playground: chat with the bot as group members do."""
        group = request.query_params.get("group", "").strip() or PLAYGROUND
        info = await self.run(queries.find_conversation, PLAYGROUND, group)
        return await self.chat(request, info, group=group)

    async def conversation(self, request: Request) -> Response:
        info = await self.run(queries.conversation_info, request.path_params["id"])
        if info is None:
            return self.page(request, "missing.html", 404, what="conversation")
        return await self.chat(request, info, group=info.group)

    async def chat(
        self, request: Request, info: queries.ConversationInfo | None, group: str
    ) -> Response:
        params = request.query_params
        window = queries.ChatWindow([], None, None)
        if info is not None:
            window = await self.run(
                queries.chat_window,
                info.id,
                before=_int(params.get("before")),
                after=_int(params.get("after")),
                around=_int(params.get("around")),
            )
        playground = info is None or info.platform == PLAYGROUND
        keep = {"group": group} if playground else {}

        def link(**cursor: int | None) -> str:
            return "?" + urlencode({**keep, **cursor})

        return self.page(
            request,
            "chat.html",
            nav="chat" if playground else "",
            info=info,
            group=group,
            window=window,
            items=self.items(window.messages),
            composer=playground and PLAYGROUND in self.bot.adapters,
            playground_on=PLAYGROUND in self.bot.adapters,
            can_teach=self.can_teach,
            sender=params.get("sender", "alice"),
            focus=_int(params.get("around")),
            older_url=link(before=window.older) if window.older else "",
            newer_url=link(after=window.newer) if window.newer else "",
        )

    async def message(self, request: Request) -> Response:
        """A message opens its conversation's chat view, around it."""
        message_id = request.path_params["id"]
        conversation_id = await self.run(queries.message_conversation, message_id)
        if conversation_id is None:
            return self.page(request, "missing.html", 404, what="message")
        return RedirectResponse(
            f"/console/conversations/{conversation_id}?around={message_id}#m{message_id}",
            status_code=303,
        )

    async def message_item(self, request: Request) -> Response:
        """One message as the chat view draws it (the playground's page polls this)."""
        view = await self.run(repo.message_view, request.path_params["id"])
        if view is None:
            return self.page(request, "missing.html", 404, what="message")
        return self.page(
            request,
            "item.html",
            item=(view, explain(view)),
            can_teach=self.can_teach,
            focus=None,
            playground=view["platform"] == PLAYGROUND and PLAYGROUND in self.bot.adapters,
        )

    # -- the message log ----------------------------------------------------------------

    async def log(self, request: Request) -> Response:
        params = request.query_params
        flt = queries.LogFilter(
            platform=params.get("platform", "").strip(),
            group=params.get("group", "").strip(),
            status=params.get("status", "").strip(),
            reason=params.get("reason", "").strip(),
            since=_day(params.get("since", "")),
            until=_day(params.get("until", "")),
        )
        page = await self.run(
            queries.log_page,
            flt,
            before=_int(params.get("before")),
            after=_int(params.get("after")),
        )
        choices = await self.run(queries.log_choices)
        query = {k: v for k, v in params.items() if k not in ("before", "after") and v}
        return self.page(
            request,
            "log.html",
            nav="log",
            flt=flt,
            page=page,
            choices=choices,
            statuses=["answered", "ignored", "failed", "expired", queries.UNFINISHED],
            older_url="?" + urlencode({**query, "before": page.older}) if page.older else "",
            newer_url="?" + urlencode({**query, "after": page.newer}) if page.newer else "",
        )

    # -- teaching the gate --------------------------------------------------------------

    async def teach(self, request: Request) -> Response:
        """ "Should have answered" / "should have stayed silent": fit a candidate, show it."""
        form = await request.form()
        message_id = _int(str(form.get("message_id", "")))
        good = form.get("label") == "good"
        view = await self.run(repo.message_view, message_id) if message_id else None
        if view is None:
            return self.page(request, "missing.html", 404, what="message")
        try:
            proposal = await asyncio.to_thread(self.teacher.teach, view, good)
        except (TeachError, ExamplesError, ValueError) as exc:
            return self.page(
                request, "teach.html", 409, nav="examples", proposal=None, error=str(exc)
            )
        return self.page(
            request, "teach.html", nav="examples", proposal=proposal, error="", view=view
        )

    async def apply(self, request: Request) -> Response:
        try:
            proposal = await asyncio.to_thread(self.teacher.apply, request.path_params["token"])
        except (TeachError, ExamplesError) as exc:
            return self.page(
                request, "teach.html", 409, nav="examples", proposal=None, error=str(exc)
            )
        return RedirectResponse(f"/console/examples?applied={proposal.token}", status_code=303)

    async def examples(self, request: Request) -> Response:
        """The example files' lists (remove some, add some, preview, then apply), and what
        each group has taught."""
        error = ""
        if request.method == "POST":
            form = await request.form()
            try:
                current = await asyncio.to_thread(self.teacher.files.load)
                if form.get("based_on") != current.fingerprint():
                    raise TeachError("the examples changed since this page was drawn: reload")
                changed = edited(
                    current,
                    remove_good=_positions(form.getlist("remove_good")),
                    remove_bad=_positions(form.getlist("remove_bad")),
                    add_good=str(form.get("add_good", "")).splitlines(),
                    add_bad=str(form.get("add_bad", "")).splitlines(),
                )
                proposal = await asyncio.to_thread(self.teacher.edit_files, changed)
                return self.page(
                    request, "teach.html", nav="examples", proposal=proposal, error="", view=None
                )
            except (TeachError, ExamplesError, ValueError) as exc:
                error = str(exc)
        shown: Examples | None = None
        try:
            shown = await asyncio.to_thread(self.teacher.files.load)
        except ExamplesError as exc:
            error = str(exc)
        gates = self.bot.services.gates
        stored = gates.global_gate.stored if gates is not None else None
        learned = await asyncio.to_thread(read_learned, self.config.work_dir)
        return self.page(
            request,
            "examples.html",
            400 if error and request.method == "POST" else 200,
            nav="examples",
            error=error,
            good=shown.questions(1) if shown else [],
            bad=shown.questions(0) if shown else [],
            based_on=shown.fingerprint() if shown else "",
            meta=stored.meta if stored is not None else None,
            own=sorted(gates.own_gates()) if gates is not None else [],
            learned=sorted(learned.values(), key=lambda item: item.conversation_id),
            can_teach=self.can_teach and shown is not None,
            applied=self.teacher.applied(request.query_params.get("applied", "")),
            files=self.teacher.files,
        )

    async def gate_curve(self, request: Request) -> Response:
        """The rejection gate's precision-recall curve, with the chosen threshold."""
        path = gate_dir(self.config.work_dir) / CURVE_FILE
        if not path.is_file():
            return JSONResponse(
                {"error": "no calibrated gate yet: run huixiangdou-bot calibrate"},
                status_code=404,
            )
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})

    # -- groups -------------------------------------------------------------------------

    async def groups(self, request: Request) -> Response:
        since = self.bot.services.clock() - timedelta(days=CHART_DAYS)
        summaries = await self.run(queries.group_summaries, since)
        return self.page(
            request, "groups.html", nav="groups", summaries=summaries, days=CHART_DAYS
        )

    async def group(self, request: Request) -> Response:
        info = await self.run(queries.conversation_info, request.path_params["id"])
        if info is None:
            return self.page(request, "missing.html", 404, what="group")
        today = self.bot.services.clock().astimezone(UTC).date()
        daily = await self.run(queries.daily_outcomes, info.id, CHART_DAYS, today)
        chart, legend = stacked_bars(daily.days, daily.series)
        settings = self.config.group(info.group)
        pipeline = self.bot.pipeline_for(info.group)
        options = middleware_settings(pipeline, info.group)
        spent = await self.run(
            groups.reply_budget, info.platform, info.group, self.bot.services.clock()
        )
        gates = self.bot.services.gates
        learned = (await asyncio.to_thread(read_learned, self.config.work_dir)).get(info.group)
        return self.page(
            request,
            "group.html",
            nav="groups",
            info=info,
            daily=daily,
            chart=chart,
            legend=legend,
            feedback=await self.run(queries.group_feedback, info.id),
            budget_used=spent.used,
            budget_limit=_budget_limit(options),
            settings=settings.model_dump(exclude={"middleware"}),
            configured=info.group in self.config.groups,
            pipeline=pipeline.names,
            own_pipeline=bool(settings.pipeline),
            options=options,
            overridden=sorted(settings.middleware),
            gate=gates.describe(info.group) if gates is not None else None,
            learned=learned,
            days=CHART_DAYS,
        )

    # -- health -------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        db = self.bot.db
        try:
            await asyncio.to_thread(db.check_schema)
            schema = ""
        except Exception as exc:
            schema = str(exc)
        kb = self.bot.services.knowledge
        kb_status = await asyncio.to_thread(kb.status) if kb is not None else None
        gates = self.bot.services.gates
        gate = gates.global_gate if gates is not None else None
        adapters = []
        for name, adapter in sorted(self.bot.adapters.items()):
            try:
                health = adapter.health()
            except Exception as exc:
                health = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
            adapters.append((name, health))
        return self.page(
            request,
            "health.html",
            nav="health",
            schema=schema,
            revision=await asyncio.to_thread(db.current_revision),
            database=db.safe_url,
            messages=await self.run(queries.message_count),
            adapters=adapters,
            model=model_state(self.bot.services.llm),
            kb=kb_status,
            gate=gate.stored.meta if gate is not None and gate.stored is not None else None,
            gate_used=gate is not None,
            own_gates=sorted(gates.own_gates()) if gates is not None else [],
            jobs=self.jobs.status() if self.jobs is not None else [],
        )
