"""Ask the chat model whether a message is a real question, and whether it is on the group's topic.

Optional and off in the CPU default: the bundled 135M model scores at chance. With a real model
(Qwen2.5-7B-Instruct, InternLM2.5-7B-Chat or a remote one) it catches chitchat that happens to
look like the documentation. Each question is answered with a score from 0 to 10, read robustly:
small models wrap the number in words or skip it (HuixiangDou issue #281), so an answer that does
not hold one clear score counts as "unsure" and follows ``on_unreadable``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.context import TurnContext
from bot.llm.protocol import ChatMessage, collect_notes
from bot.llm.scoring import score
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext


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

    async def ask(self, template: str, ctx: TurnContext) -> tuple[float | None, dict[str, Any]]:
        """The model's 0–10 score (None when unreadable) and how it was read, for the trace.

        ``bot.llm.scoring`` constrains a local model to a bare 0–10 answer and takes the
        expected score from its token probabilities; other models' text is parsed strictly.
        """
        with collect_notes() as notes:
            result = await score(self.services.llm, self.messages(template, ctx))
        return result.value, {**result.detail(), **notes}

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        options = self.options_for(ctx)
        if ctx.follow_up is not None:  # a follow-up to an answer is a question by definition
            ctx.record(follow_up=ctx.follow_up.message_id)
            return await call_next(ctx)
        accept_unsure = options.on_unreadable == "accept"
        # The gate middleware raises the bar as the group's reply budget drains.
        threshold = ctx.raised(options.threshold, top=10.0)
        question, detail = await self.ask("reject_question", ctx)
        ctx.record(question=detail, strictness=ctx.strictness)
        if question is None and not accept_unsure:
            return ctx.ignore("unsure", threshold=threshold)
        if question is not None and question < threshold:
            return ctx.ignore("chitchat", score=question, threshold=threshold)
        if options.ask_topic and ctx.group.topic:
            topic, detail = await self.ask("reject_topic", ctx)
            ctx.record(topic=ctx.group.topic, topic_score=detail)
            if topic is None and not accept_unsure:
                return ctx.ignore("unsure", threshold=options.topic_threshold)
            if topic is not None and topic < options.topic_threshold:
                return ctx.ignore("off-topic", score=topic, threshold=options.topic_threshold)
        ctx.record(score=question, threshold=threshold)
        return await call_next(ctx)
