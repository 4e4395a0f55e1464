"""Ask the chat model whether a message is a real question, and whether it is on the group's topic.

Optional and off in the CPU default: the bundled 135M model scores at chance. With a real model
(Qwen2.5-7B-Instruct, InternLM2.5-7B-Chat or a remote one) it catches chitchat that happens to
look like the documentation. Each question is answered with a score from 0 to 10, read robustly:
small models wrap the number in words or skip it (HuixiangDou issue #281), so an answer that does
not hold one clear score counts as "unsure" and follows ``on_unreadable``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.context import TurnContext
from bot.llm.base import ChatMessage
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext

_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:\.\d+)?(?![\d.]*\d)")
_OUT_OF_TEN = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:/|out of|分?\s*[（(]?满分)\s*10")
_WORDS_ONLY = re.compile(r"^[\W_]*(?:score|rating|answer|得分|分数|评分)?[\W_]*$", re.I)


def parse_score(text: str) -> float | None:
    """The one score from 0 to 10 in a model's answer, or None when there is not exactly one.

    Accepts "7", " 7.", "Score: 7", "7/10", "８分"; refuses "", "yes", "12", "between 3 and 7".
    """
    text = unicodedata.normalize("NFKC", text or "").strip()
    if not text:
        return None
    match = _OUT_OF_TEN.search(text)
    if match:
        candidates = [match.group(1)]
    else:
        candidates = _NUMBER.findall(text)
        if len(candidates) != 1:
            return None
    value = float(candidates[0])
    return value if 0 <= value <= 10 else None


class RejectLLMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    threshold: float = Field(
        5.0, ge=0, le=10, description="'is it a real question?' scores below this are chitchat"
    )
    topic_threshold: float = Field(
        4.0, ge=0, le=10, description="'is it about the group's topic?' scores below are off-topic"
    )
    ask_topic: bool = Field(True, description="ask the topic question when the group has a topic")
    on_unreadable: Literal["accept", "reject"] = Field(
        "accept", description="what to do when the model's answer holds no clear score"
    )
    max_chars: int = Field(800, ge=32, description="longer messages are cut before asking")


class RejectLLM(BaseMiddleware[RejectLLMOptions]):
    name = "reject.llm"
    Options = RejectLLMOptions

    async def warm_up(self) -> None:
        for template in ("reject_question", "reject_topic"):
            self.services.prompts.check(template, {"question", "topic"})

    def messages(self, template: str, ctx: TurnContext) -> list[ChatMessage]:
        prompt = self.services.prompts.render(
            template,
            ctx.language,
            question=ctx.question[: self.options.max_chars],
            topic=ctx.group.topic or "",
        )
        return [{"role": "user", "content": prompt}]

    async def score(self, template: str, ctx: TurnContext) -> tuple[float | None, str]:
        """The model's 0–10 score and its raw answer (kept for the trace)."""
        completion = await self.services.llm.complete(
            self.messages(template, ctx), max_tokens=8, temperature=0.0
        )
        return parse_score(completion.text), completion.text.strip()[:80]

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        options = self.options
        accept_unsure = options.on_unreadable == "accept"
        question, raw = await self.score("reject_question", ctx)
        ctx.record(question_score=question, question_answer=raw)
        if question is None and not accept_unsure:
            return ctx.ignore("unsure", threshold=options.threshold)
        if question is not None and question < options.threshold:
            return ctx.ignore("chitchat", score=question, threshold=options.threshold)
        if options.ask_topic and ctx.group.topic:
            topic, raw = await self.score("reject_topic", ctx)
            ctx.record(topic=ctx.group.topic, topic_score=topic, topic_answer=raw)
            if topic is None and not accept_unsure:
                return ctx.ignore("unsure", threshold=options.topic_threshold)
            if topic is not None and topic < options.topic_threshold:
                return ctx.ignore("off-topic", score=topic, threshold=options.topic_threshold)
        ctx.record(score=question, threshold=options.threshold)
        return await call_next(ctx)
