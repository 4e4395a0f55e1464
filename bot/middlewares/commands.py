"""The admins' ``/hxd`` commands, carried out by the gate middleware (only for the ids in
``middleware.gate.admins``; anyone else's are ignored without a word):

- ``/hxd status``: paused or not, the reply budget, hours, the hold, and the gate in use;
- ``/hxd pause`` / ``/hxd resume``: silence the bot in this group, and undo it;
- ``/hxd good <question>`` / ``/hxd bad <question>``: a question the bot should (not) answer,
  or, sent as a reply to one of the bot's answers, that answer's question: stored as feedback,
  learned by the gate at its next re-calibration;
- ``/hxd why``: the last decision in the group, its trace in short;
- ``/hxd forget``: delete the bot's last message in the group, where the platform allows.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.adapter import NotSupported, SendError
from bot.context import TurnContext
from bot.message import Reply, ReplyKind
from bot.storage import groups
from bot.storage.models import FeedbackSource

if TYPE_CHECKING:
    from bot.middlewares.gate import Gate, GateOptions

HELP = (
    "/hxd status | pause | resume | good <question> | bad <question> | why | forget\n"
    "good/bad without a question, as a reply to one of my answers: that answer's question."
)


def summarize_trace(view: dict[str, Any]) -> str:
    """One line per step: name, verdict, score against threshold."""
    lines = [f'#{view["id"]} "{_clip(view["text"])}" -> {view["decision"] or view["status"]}']
    for step in view["trace"]:
        line = f"  {step['name']}: {step['verdict']}"
        if step.get("score") is not None and step.get("threshold") is not None:
            line += f" ({step['score']:.3f} vs {step['threshold']:.3f})"
        elif step.get("score") is not None:
            line += f" ({step['score']:.3f})"
        detail = step.get("detail") or {}
        extras = [
            f"{key}={detail[key]}"
            for key in ("strictness", "budget_used", "follow_up", "duplicate_of", "by", "tagged")
            if detail.get(key) not in (None, 0, 0.0, False)
        ]
        if extras:
            line += " [" + ", ".join(extras) + "]"
        lines.append(line)
    return "\n".join(lines)


def _clip(text: str, limit: int = 60) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


async def run_command(
    gate: Gate, ctx: TurnContext, options: GateOptions, name: str, argument: str, now: datetime
) -> Reply:
    ctx.reply_kind = ReplyKind.COMMAND
    ctx.decision = f"command: {name}"
    ctx.record(command=name)
    ctx.step.verdict = ctx.decision
    handler = _COMMANDS.get(name)
    if handler is None:
        return Reply(f"Unknown command {name!r}. {HELP}")
    return Reply(await handler(gate, ctx, options, argument, now))


async def _status(
    gate: Gate, ctx: TurnContext, options: GateOptions, argument: str, now: datetime
) -> str:
    message = ctx.message
    where = (message.platform, message.conversation_id)
    paused = await gate.db.run(groups.paused, *where)
    spent = await gate.db.run(groups.reply_budget, *where, now)
    budget = options.budget
    zone = ZoneInfo(options.timezone)
    lines = [
        f"Group {message.conversation_id}: "
        + (
            f"paused since {paused.at.astimezone(zone):%Y-%m-%d %H:%M} by {paused.by}"
            if paused
            else "active"
        ),
        f"Replies in the last hour: {spent.used}/{budget.per_hour or 'unlimited'} "
        f"(min gap {budget.min_gap_seconds:g} s); threshold raised "
        f"{budget.strictness(spent.used):.0%} of the way to certainty",
        "Hours: "
        + (", ".join(options.working_hours) or "always")
        + f" {options.timezone}"
        + (f", quiet on {', '.join(options.quiet_days)}" if options.quiet_days else "")
        + f"; now {now.astimezone(zone):%a %H:%M}: "
        + (options.quiet_reason(now) or "working"),
        f"Hold: {options.hold.seconds:g} s for a human to answer first "
        f"({options.hold.mention_seconds:g} s for @-mentions)",
    ]
    gates = gate.services.gates
    if gates is not None:
        lines.append("Gate: " + gates.describe(message.conversation_id))
    return "\n".join(lines)


async def _pause(
    gate: Gate, ctx: TurnContext, options: GateOptions, argument: str, now: datetime
) -> str:
    message = ctx.message
    await gate.db.run(
        groups.set_paused, message.platform, message.conversation_id, now, message.sender_id
    )
    return "Paused: I stay silent in this group until /hxd resume."


async def _resume(
    gate: Gate, ctx: TurnContext, options: GateOptions, argument: str, now: datetime
) -> str:
    message = ctx.message
    await gate.db.run(groups.set_paused, message.platform, message.conversation_id, None)
    return "Resumed: I answer questions in this group again."


async def _example(gate: Gate, ctx: TurnContext, rating: int, argument: str, now: datetime) -> str:
    kind = "good" if rating > 0 else "bad"
    example = argument
    reply_id = None
    if not example and (ctx.message.reply_to or ctx.message.thread_root):
        answered = await gate.db.run(groups.followed_up, ctx.message)
        if answered is not None:
            example, reply_id = answered.question, answered.reply_id
    if not example:
        return f"Usage: /hxd {kind} <question>, or /hxd {kind} as a reply to one of my answers."
    await gate.db.run(
        groups.add_feedback,
        message_id=ctx.message_id,
        reply_id=reply_id,
        user_id=ctx.message.sender_id,
        rating=rating,
        source=FeedbackSource.ADMIN,
        example=example,
        comment=f"/hxd {kind}",
        at=now,
    )
    ctx.record(example=example, rating=rating)
    should = "should answer" if rating > 0 else "should stay silent on"
    return (
        f'Noted: a question I {should}: "{_clip(example)}". The gate learns it at its next '
        "re-calibration."
    )


async def _good(
    gate: Gate, ctx: TurnContext, options: GateOptions, argument: str, now: datetime
) -> str:
    return await _example(gate, ctx, 1, argument, now)


async def _bad(
    gate: Gate, ctx: TurnContext, options: GateOptions, argument: str, now: datetime
) -> str:
    return await _example(gate, ctx, -1, argument, now)


async def _why(
    gate: Gate, ctx: TurnContext, options: GateOptions, argument: str, now: datetime
) -> str:
    message = ctx.message
    view = await gate.db.run(
        groups.last_decision, message.platform, message.conversation_id, ctx.message_id
    )
    if view is None:
        return "No decision in this group yet."
    return summarize_trace(view)


async def _forget(
    gate: Gate, ctx: TurnContext, options: GateOptions, argument: str, now: datetime
) -> str:
    message = ctx.message
    last = await gate.db.run(groups.last_answer, message.platform, message.conversation_id)
    if last is None or not last.platform_reply_id:
        return "I have nothing here to forget."
    adapter = gate.services.adapters.get(message.platform)
    try:
        if adapter is None:
            raise NotSupported(f"no {message.platform} adapter is running")
        await adapter.delete(message.conversation_id, last.platform_reply_id)
    except NotSupported as exc:
        ctx.record(forget="not supported")
        return f"I cannot delete messages here ({exc})."
    except SendError as exc:
        ctx.record(forget=f"failed: {exc}")
        return f"Deleting my last answer failed: {exc}"
    await gate.db.run(groups.mark_deleted, last.reply_id, now)
    await gate.db.run(
        groups.add_feedback,
        message_id=last.message_id,
        reply_id=last.reply_id,
        user_id=message.sender_id,
        rating=-1,
        source=FeedbackSource.ADMIN,
        example=last.question,
        comment="/hxd forget",
        at=now,
    )
    ctx.record(forget=last.reply_id)
    return f'Deleted my answer to "{_clip(last.question)}" (noted as a question to skip).'


async def _help(
    gate: Gate, ctx: TurnContext, options: GateOptions, argument: str, now: datetime
) -> str:
    return HELP


_COMMANDS = {
    "status": _status,
    "pause": _pause,
    "resume": _resume,
    "good": _good,
    "bad": _bad,
    "why": _why,
    "forget": _forget,
    "help": _help,
}
