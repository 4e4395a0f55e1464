"""Group manners: when the bot may speak in a group, and how much.

Before the rest of the pipeline, in this order: an admin's ``/hxd`` command is carried out
(anyone else's is ignored without a word); a paused group gets silence; a reply to one of the
bot's answers is feedback ("thanks", "wrong": stored, not answered) or a follow-up (answered
with that exchange as context, as if the bot had been @-mentioned, without asking the
rejection gate again); outside working hours and on quiet days the bot stays silent; the
group's reply budget (bot messages in the last hour, counted in the database) silences all but
@-mentions once spent and, as it drains, raises the threshold the rejection gate must reach
(``ctx.strictness``), so what is left goes to the questions the bot is surest about; a question
very close to one answered recently gets a short pointer to that answer.

After the rest of the pipeline: an answer the bot is not sure of, or a real question it found
no answer to, may be handed to the on-call people with an @-mention instead; and any reply
in a group is held for a while (``ctx.hold_until``, kept apart by the budget's minimum gap) so
a human can answer first: bot.holds posts it later unless someone did (``answered_by_human``).

Settings: ``middleware.gate`` in bot.yaml, overridden per group under
``groups.<chat id>.middleware.gate`` (merged key by key).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.config import ConfigError
from bot.context import Exchange, HistoryTurn, TurnContext
from bot.message import Message, Reply, ReplyKind
from bot.middlewares.commands import run_command
from bot.pipeline import BaseMiddleware, CallNext
from bot.storage import groups
from bot.storage.db import Database
from bot.storage.models import FeedbackSource
from knowledge.text import similarity, terms

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

# Short replies to an answer that say it helped, or that it was wrong.
POSITIVE = [
    "thanks", "thank you", "thx", "ty", "great", "works", "it works", "solved", "helpful",
    "谢谢", "感谢", "多谢", "谢啦", "好的谢谢", "有用", "解决了", "可以了", "好使", "👍",
]  # fmt: skip
NEGATIVE = [
    "wrong", "not right", "incorrect", "doesn't work", "does not work", "not helpful",
    "useless", "no", "nope", "不对", "错了", "不是", "没用", "不行", "答非所问", "胡说", "👎",
]  # fmt: skip
# Words too common to say that two messages are about the same thing.
_STOP = {
    "the", "and", "you", "your", "for", "are", "was", "this", "that", "with", "have", "not",
    "but", "can", "just", "what", "how", "why", "when", "use", "using", "get", "does", "did",
}  # fmt: skip


def parse_range(text: str) -> tuple[time, time]:
    match = _RANGE.match(text)
    if not match:
        raise ValueError(f"expected a range like 09:00-18:00, got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2 > 0):
        raise ValueError(f"not a time of day in {text!r}")
    end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
    return time(h1, m1), end


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BudgetOptions(Section):
    # At most this many bot messages per group in any hour (answers, pointers, tags); null:
    # no limit. Once spent, only @-mentions and follow-ups are answered.
    per_hour: int | None = Field(20, ge=1)
    # Seconds between two bot messages in a group; a reply due sooner is held until then
    # (@-mentions and follow-ups are not held).
    min_gap_seconds: float = Field(30, ge=0)
    # Once this share of the hour's budget is used, the answering threshold starts to rise...
    rise_from: float = Field(0.5, ge=0, lt=1)
    # ...reaching this strictness when the budget is spent (0: never raised; 1: only certain
    # answers). The threshold is raised this share of the way from the calibrated one to 1.
    max_strictness: float = Field(0.8, ge=0, le=1)

    def strictness(self, used: int) -> float:
        if self.per_hour is None:
            return 0.0
        share = used / self.per_hour
        rising = (share - self.rise_from) / (1 - self.rise_from)
        return round(self.max_strictness * min(max(rising, 0.0), 1.0), 4)


class HoldOptions(Section):
    # Seconds a reply in a group waits so a human can answer first; 0 posts at once.
    seconds: float = Field(180, ge=0)
    # The same for @-mentions and follow-ups (someone asked the bot itself).
    mention_seconds: float = Field(0, ge=0)
    # A later message from someone else (not a question itself) that shares this share of its
    # words with the question or the bot's reply counts as a human's answer.
    answer_overlap: float = Field(0.4, gt=0, le=1)


class DuplicateOptions(Section):
    # A question asked again within this many minutes of the bot's answer to it gets a short
    # pointer to that answer; 0 turns this off.
    window_minutes: float = Field(120, ge=0)
    # How close the wording must be (Jaccard similarity of the words, 0-1).
    similarity: float = Field(0.75, gt=0, le=1)


class TagOptions(Section):
    # People (platform user ids) to @-mention with a question the bot is unsure of, instead
    # of answering it; empty turns tagging off.
    on_call: list[str] = Field(default_factory=list)
    # An answer whose confidence is less than this above the threshold is unsure (0: never).
    margin: float = Field(0.0, ge=0, le=1)
    # Tag also when a question the gate accepted found no answer (no-knowledge, unsure).
    no_answer: bool = True


class FeedbackOptions(Section):
    # Replies to an answer of the bot's (at most max_chars long) that contain one of these
    # words say it helped (+1) or was wrong (-1); they are stored, not answered.
    positive: list[str] = Field(default_factory=lambda: list(POSITIVE))
    negative: list[str] = Field(default_factory=lambda: list(NEGATIVE))
    max_chars: int = Field(40, ge=1)


class GateOptions(Section):
    timezone: str = "UTC"
    # Local times when the bot answers ("09:00-18:00"; several ranges allowed); empty: always.
    working_hours: list[str] = Field(default_factory=list)
    # Days the bot stays silent: weekdays (mon ... sun) and dates (2026-10-01).
    quiet_days: list[Weekday] = Field(default_factory=list)
    quiet_dates: list[date] = Field(default_factory=list)
    # Answer @-mentions and follow-ups outside working hours and on quiet days.
    off_hours_mentions: bool = True
    # Platform user ids whose /hxd commands are obeyed; anyone else's are ignored silently.
    admins: list[str] = Field(default_factory=list)
    command_prefix: str = Field("/hxd", min_length=1)
    budget: BudgetOptions = BudgetOptions()
    hold: HoldOptions = HoldOptions()
    duplicates: DuplicateOptions = DuplicateOptions()
    tag: TagOptions = TagOptions()
    feedback: FeedbackOptions = FeedbackOptions()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai, UTC)") from None
        return value

    @field_validator("working_hours")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_range(item)
        return value

    def quiet_reason(self, now: datetime) -> str | None:
        """Why ``now`` is outside the bot's hours ("quiet-day", "off-hours"), or None."""
        local = now.astimezone(ZoneInfo(self.timezone))
        if WEEKDAYS[local.weekday()] in self.quiet_days or local.date() in self.quiet_dates:
            return "quiet-day"
        if self.working_hours:
            clock = local.time().replace(tzinfo=None)
            ranges = [parse_range(r) for r in self.working_hours]
            if not any(start <= clock <= end for start, end in ranges):
                return "off-hours"
        return None


def feedback_rating(text: str, options: FeedbackOptions) -> int:
    """+1 or -1 when a short reply says the answer helped or was wrong, else 0."""
    cleaned = text.strip().lower()
    if not cleaned or len(cleaned) > options.max_chars:
        return 0

    def says(words: list[str]) -> bool:
        for word in words:
            word = word.lower()
            if word.isascii() and word.replace(" ", "").replace("'", "").isalpha():
                if re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", cleaned):
                    return True
            elif word in cleaned:
                return True
        return False

    # "not helpful" says "helpful" too: the negative list is asked first.
    if says(options.negative):
        return -1
    return 1 if says(options.positive) else 0


# A member who has the same problem is not answering it.
_ME_TOO = ("same problem", "same issue", "same error", "me too", "also have", "also get",
           "我也", "同问", "同样的问题", "一样的问题", "+1")  # fmt: skip


def content_terms(text: str) -> set[str]:
    return terms(text) - _STOP


def looks_like_answer(text: str, question: str, reply: str, needed: float) -> float:
    """How much of ``text`` is about the question or the bot's reply (0-1), for messages that
    are not questions themselves; 0 when it says too little to tell."""
    words = content_terms(text)
    lowered = text.lower()
    if len(words) < 2 or text.rstrip().endswith(("?", "？")) or any(m in lowered for m in _ME_TOO):
        return 0.0
    shared = words & (content_terms(question) | content_terms(reply))
    share = len(shared) / len(words)
    return share if len(shared) >= 2 and share >= needed else 0.0


def _ago(delta: timedelta, language: str) -> str:
    minutes = max(1, round(delta.total_seconds() / 60))
    if language == "zh":
        return f"{minutes} 分钟前" if minutes < 120 else f"{minutes // 60} 小时前"
    return f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"


def _clip(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def pointer_text(earlier: groups.Answered, now: datetime, language: str) -> str:
    ago = _ago(now - earlier.sent_at, language)
    if language == "zh":
        return (
            f"这个问题{ago}刚回答过（{earlier.asker_name} 问：“{_clip(earlier.question, 40)}”）："
            f"“{_clip(earlier.answer)}” 详见上面的回答。"
        )
    return (
        f'Answered {ago} (to {earlier.asker_name}: "{_clip(earlier.question, 40)}"): '
        f'"{_clip(earlier.answer)}" See the full answer above.'
    )


def tag_text(ctx: TurnContext) -> str:
    asker = ctx.message.sender_name or ctx.message.sender_id
    if ctx.language == "zh":
        return f"这个问题我没有把握，请帮忙看看 {asker} 的提问：“{_clip(ctx.question, 120)}”"
    return f'I\'m not sure about this one; could you help {asker}? "{_clip(ctx.question, 120)}"'


class Gate(BaseMiddleware[GateOptions]):
    name = "gate"
    Options = GateOptions

    @property
    def db(self) -> Database:
        if self.services.database is None:
            raise ConfigError(
                "the gate middleware runs in the bot (huixiangdou-bot run, ask): it counts "
                "replies in the database"
            )
        return self.services.database

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        options = self.options_for(ctx)
        message = ctx.message
        now = self.services.clock()
        command = self._command(ctx.question, options)
        if command is not None:
            if message.sender_id not in options.admins:
                return ctx.ignore("command", why="not an admin", command=command[0])
            return await run_command(self, ctx, options, command[0], command[1], now)
        if (paused := await self.db.run(groups.paused, *self._where(message))) is not None:
            return ctx.ignore("paused", paused_by=paused.by, since=paused.at.isoformat())
        if message.reply_to or message.thread_root:
            answered = await self.db.run(groups.followed_up, message)
            if answered is not None:
                rating = feedback_rating(ctx.question, options.feedback)
                if rating:
                    return await self._feedback(ctx, answered, rating)
                self._follow(ctx, answered)
        if message.conversation_type != "group":
            return await call_next(ctx)
        spent = await self._manners(ctx, options, now)
        if spent is None:
            return None
        if ctx.follow_up is None:
            earlier = await self._duplicate(ctx, options, now)
            if earlier is not None:
                pointer = Reply(pointer_text(earlier, now, ctx.language))
                return self._hold(ctx, options, now, spent.last_post, pointer)
        reply = self._maybe_tag(ctx, options, await call_next(ctx))
        return None if reply is None else self._hold(ctx, options, now, spent.last_post, reply)

    # -- before ---------------------------------------------------------------------------------

    def _command(self, question: str, options: GateOptions) -> tuple[str, str] | None:
        text = question.strip()
        prefix = options.command_prefix
        if not (text == prefix or text.startswith(prefix + " ")):
            return None
        name, _, rest = text[len(prefix) :].strip().partition(" ")
        return name.lower() or "help", rest.strip()

    @staticmethod
    def _where(message: Message) -> tuple[str, str]:
        return message.platform, message.conversation_id

    async def _feedback(
        self, ctx: TurnContext, answered: groups.Answered, rating: int
    ) -> Reply | None:
        await self.db.run(
            groups.add_feedback,
            message_id=answered.message_id,
            reply_id=answered.reply_id,
            user_id=ctx.message.sender_id,
            rating=rating,
            source=FeedbackSource.REPLY,
            example=answered.question,
            comment=ctx.question,
            at=self.services.clock(),
        )
        return ctx.ignore("feedback", rating=rating, on_message=answered.message_id)

    def _follow(self, ctx: TurnContext, answered: groups.Answered) -> None:
        ctx.follow_up = Exchange(answered.message_id, answered.question, answered.answer)
        turn = HistoryTurn(answered.asker_name, answered.question, answered.answer)
        if not any(h.text == turn.text and h.reply == turn.reply for h in ctx.history):
            ctx.history.insert(0, turn)
        ctx.record(follow_up=answered.message_id)

    async def _manners(
        self, ctx: TurnContext, options: GateOptions, now: datetime
    ) -> groups.Budget | None:
        """Working hours and the reply budget: what is spent, or None when the message
        stops here."""
        addressed = ctx.addressed
        reason = options.quiet_reason(now)
        local = now.astimezone(ZoneInfo(options.timezone))
        ctx.record(local_time=local.strftime("%a %H:%M"), addressed=addressed)
        if reason is not None and not (addressed and options.off_hours_mentions):
            ctx.ignore(reason, timezone=options.timezone)
            return None
        budget = options.budget
        spent = await self.db.run(groups.reply_budget, *self._where(ctx.message), now)
        ctx.record(budget_used=spent.used, budget_per_hour=budget.per_hour)
        if budget.per_hour is not None and spent.used >= budget.per_hour and not addressed:
            ctx.ignore("over-budget")
            return None
        if not addressed:
            ctx.strictness = budget.strictness(spent.used)
        ctx.record(strictness=ctx.strictness)
        return spent

    async def _duplicate(
        self, ctx: TurnContext, options: GateOptions, now: datetime
    ) -> groups.Answered | None:
        window = options.duplicates.window_minutes
        if window <= 0:
            return None
        since = now - timedelta(minutes=window)
        recent = await self.db.run(groups.recent_answers, *self._where(ctx.message), since)
        scored = [(similarity(ctx.question, a.question), a) for a in recent]
        best = max(scored, key=lambda pair: pair[0], default=None)
        if best is None or best[0] < options.duplicates.similarity:
            return None
        ctx.reply_kind = ReplyKind.POINTER
        ctx.decision = "answered: duplicate"
        ctx.record(
            duplicate_of=best[1].message_id,
            score=best[0],
            threshold=options.duplicates.similarity,
        )
        ctx.step.verdict = "duplicate"
        return best[1]

    # -- after ----------------------------------------------------------------------------------

    def _maybe_tag(
        self, ctx: TurnContext, options: GateOptions, reply: Reply | None
    ) -> Reply | None:
        tag = options.tag
        if not tag.on_call or ctx.reply_kind != ReplyKind.ANSWER:
            return reply
        confident = ctx.confidence is not None and ctx.threshold is not None
        why = None
        if reply is not None and confident and tag.margin > 0:
            assert ctx.confidence is not None and ctx.threshold is not None
            if ctx.confidence < ctx.threshold + tag.margin:
                why = "low-confidence"
        elif (
            reply is None
            and tag.no_answer
            and ctx.decision
            in (
                "ignored: no-knowledge",
                "ignored: unsure",
            )
        ):
            accepted = confident or ctx.addressed
            why = "no-answer" if accepted else None
        if why is None:
            return reply
        ctx.record(tagged=why, instead_of=ctx.decision, on_call=list(tag.on_call))
        ctx.decision = f"tagged: {why}"
        ctx.reply_kind = ReplyKind.TAG
        return Reply(tag_text(ctx), mentions=tuple(tag.on_call))

    def _hold(
        self,
        ctx: TurnContext,
        options: GateOptions,
        now: datetime,
        last: datetime | None,
        reply: Reply,
    ) -> Reply:
        """Hold the reply so a human can answer first, and keep bot messages apart (``last``:
        when the bot last spoke here, or will)."""
        hold = options.hold
        addressed = ctx.addressed
        until = now + timedelta(seconds=hold.mention_seconds if addressed else hold.seconds)
        if not addressed and last is not None:
            until = max(until, last + timedelta(seconds=options.budget.min_gap_seconds))
        if until > now:
            ctx.hold_until = until
            ctx.record(hold_until=until.isoformat(), hold_seconds=(until - now).total_seconds())
        if ctx.decision is None:
            ctx.decision = "answered"
        return reply

    # -- the holds' question: did a human answer? -------------------------------------------------

    async def answered_by_human(
        self, question: Message, reply: Reply, later: Sequence[Message]
    ) -> dict[str, object] | None:
        """A later message from someone else, not a question, about the same thing as the
        question or the bot's held reply (bot.holds asks before posting)."""
        options = self.options_for_group(question.conversation_id)
        for message in later:
            if message.sender_id == question.sender_id or message.mentioned_bot:
                continue
            share = looks_like_answer(
                message.text, question.text, reply.text, options.hold.answer_overlap
            )
            if share:
                return {
                    "by": message.sender_name or message.sender_id,
                    "how": "judged",
                    "text": message.text,
                    "score": round(share, 3),
                    "threshold": options.hold.answer_overlap,
                }
        return None
