"""The adapter contract, inherited by every platform's tests (Feishu, DingTalk, WeCom, ...).

A platform's test module subclasses ``AdapterContract`` and provides a ``platform`` fixture:
a factory that starts the platform's fake server and a real bot (core, SDK, adapter) connected
to it, and returns a ``Platform`` harness. The contract then checks what every adapter owes the
core and the group: a message is stored before the platform is acknowledged, the ack never
waits for the model, a redelivered message is answered once, a long answer arrives split
within the platform's limit with its citations whole, refused input stores nothing, and a
webhook takes thousands of generated bad requests (tests/contracts/fuzz.py) with only 4xx
answers, nothing stored, and a quiet log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import pytest
from sqlalchemy import func, select

from adapters.common.split import Measure
from bot.app.server import create_app
from bot.context import Chunk
from bot.message import Reference
from bot.runtime import Bot
from bot.storage import repo
from bot.storage.models import MessageRecord
from tests.contracts.fuzz import SignedRoute, fuzz, webhook_requests
from tests.fakes import GatedChatModel, ScriptedChatModel

# A pipeline with no knowledge base: questions (a "?") pass, the model answers, one citation.
PIPELINE = [
    "normalize",
    "tests.plugins:RequireKeyword",
    "tests.contracts.adapter:OneReference",
    "generate",
]
ANSWER = "Install mmcv from the wheel index that matches your CUDA, then pip install mmdet."
# Generated requests per webhook route in `make test` (bench/fuzz_webhooks.py runs 10,000).
FUZZ_EXAMPLES = 1000
SILENT = ["tests.plugins:StaySilent"]


class Platform(Protocol):
    """A fake platform with a real bot connected through the adapter under test."""

    bot: Bot
    # The platform's size limit for one message, and how it counts (len or UTF-8 bytes).
    limit: int
    measure: Measure
    # The webhook route, signed and sealed as the platform does; None without one (websocket).
    webhook: SignedRoute | None
    # The platform's secrets (app secret, keys, tokens): never in an answer or the log.
    secrets: tuple[str, ...]

    async def deliver(self, text: str, message_id: str) -> None:
        """Send a group message that @-mentions the bot, as the platform does; return once the
        platform got its acknowledgement (assert it was a success)."""
        ...

    def replies(self) -> list[str]:
        """The text of every message the bot posted to the fake platform, in order."""
        ...

    def refusals(self) -> Sequence[tuple[str, Callable[[], Awaitable[Any]]]]:
        """(what, send) pairs of input the adapter must refuse or drop without storing: forged
        signatures, malformed bodies or frames... ``send`` asserts the platform-level answer
        (a 4xx, or an ack with an error code) itself."""
        ...


MakePlatform = Callable[..., Awaitable[Platform]]


async def stored_count(bot: Bot) -> int:
    def count(session: Any) -> int:
        return int(session.scalar(select(func.count(MessageRecord.id))) or 0)

    return await bot.db.run(count)


async def only_view(bot: Bot) -> dict[str, Any]:
    await bot.join()

    def ids(session: Any) -> list[int]:
        return list(session.scalars(select(MessageRecord.id)))

    found = await bot.db.run(ids)
    assert len(found) == 1, found
    view = await bot.db.run(repo.message_view, found[0])
    assert view is not None
    return view


class OneReference:
    """Gives the answer one passage to cite, so every platform shows a citation."""

    name = "one_reference"

    def __init__(self, services: Any, options: Any) -> None:
        pass

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        ctx.chunks.append(Chunk(text="pip install mmdet", source="docs/get_started.md"))
        ctx.references.append(Reference("docs/get_started.md", "Installation"))
        return await call_next(ctx)


class AdapterContract:
    """Subclass in a platform's tests and provide the ``platform`` fixture."""

    @pytest.fixture
    def platform(self) -> MakePlatform:
        raise NotImplementedError("a platform's test class provides this fixture")

    async def test_a_question_is_stored_acked_and_answered(self, platform: MakePlatform) -> None:
        harness = await platform(llm=ScriptedChatModel(ANSWER), pipeline=PIPELINE)
        await harness.deliver("How do I install mmdet?", "contract-q-1")
        view = await only_view(harness.bot)
        assert view["status"] == "answered", view
        [reply] = harness.replies()
        assert ANSWER in reply
        assert "docs/get_started.md" in reply  # the citation reached the group

    async def test_the_ack_does_not_wait_for_the_model(self, platform: MakePlatform) -> None:
        model = GatedChatModel(ANSWER)
        harness = await platform(llm=model, pipeline=PIPELINE)
        await harness.deliver("How do I install mmdet?", "contract-slow-1")
        # Acknowledged and stored while the model has not answered yet.
        await asyncio.wait_for(model.started.wait(), 10)
        assert await stored_count(harness.bot) == 1
        assert harness.replies() == []
        model.gate.set()
        view = await only_view(harness.bot)
        assert view["status"] == "answered"

    async def test_a_redelivered_message_is_answered_once(self, platform: MakePlatform) -> None:
        model = ScriptedChatModel(ANSWER)
        harness = await platform(llm=model, pipeline=PIPELINE)
        for _ in range(5):
            await harness.deliver("How do I install mmdet?", "contract-dup-1")
        view = await only_view(harness.bot)
        assert view["status"] == "answered"
        assert len(harness.replies()) == 1
        assert len(model.calls) == 1

    async def test_chitchat_is_stored_and_not_answered(self, platform: MakePlatform) -> None:
        model = ScriptedChatModel(ANSWER)
        harness = await platform(llm=model, pipeline=PIPELINE)
        await harness.deliver("haha thanks everyone", "contract-chat-1")
        view = await only_view(harness.bot)
        assert view["decision"] == "ignored: chitchat"
        assert harness.replies() == [] and model.calls == []

    async def test_a_long_answer_arrives_split_within_the_limit(
        self, platform: MakePlatform
    ) -> None:
        paragraph = "安装 mmcv 需要匹配 CUDA 版本的预编译包，请先确认驱动。" * 8
        code = "```bash\npip install -U openmim\nmim install mmcv\n```"
        answer = "\n\n".join([paragraph] * 12 + [code] + [paragraph] * 12)
        harness = await platform(llm=ScriptedChatModel(answer), pipeline=PIPELINE)
        await harness.deliver("How do I install mmcv?", "contract-long-1")
        view = await only_view(harness.bot)
        assert view["status"] == "answered", view
        replies = harness.replies()
        assert len(replies) >= 2
        assert all(harness.measure(r) <= harness.limit for r in replies)
        # The code block is not cut (each platform renders its fences its own way).
        assert sum("pip install -U openmim\nmim install mmcv" in r for r in replies) == 1
        assert "docs/get_started.md" in replies[-1]  # the citation comes last, whole
        assert sum(r.count("安装 mmcv 需要匹配") for r in replies) == 24 * 8

    async def test_refused_input_stores_nothing(self, platform: MakePlatform) -> None:
        harness = await platform(llm=ScriptedChatModel(ANSWER), pipeline=PIPELINE)
        cases = harness.refusals()
        for what, send in cases:
            await send()
            await harness.bot.join()
            assert await stored_count(harness.bot) == 0, what
        assert harness.replies() == []
        # Still alive and answering after all that.
        await harness.deliver("How do I install mmdet?", "contract-after-refusals")
        view = await only_view(harness.bot)
        assert view["status"] == "answered"

    async def test_fuzzed_webhook_requests_are_refused_and_store_nothing(
        self, platform: MakePlatform
    ) -> None:
        # Messages that get through are stored and left unanswered: the webhook is under test.
        harness = await platform(llm=ScriptedChatModel(ANSWER), pipeline=SILENT)
        route = harness.webhook
        if route is None:
            pytest.skip("no webhook in this mode")
        report = await fuzz(
            create_app(harness.bot),
            "POST",
            route.path,
            webhook_requests(route),
            examples=FUZZ_EXAMPLES,
            stored=lambda: stored_count(harness.bot),
            secrets=harness.secrets,
        )
        report.assert_quiet()
        # Every kind of bad input was tried, and the refusals covered each status.
        assert set(report.kinds) == {
            "unsigned",
            "signed garbage",
            "sealed garbage",
            "wrong types",
            "oversized",
        }
        assert {400, 401, 413} <= set(report.statuses), report.summary()
        # Still answering after all that.
        before = await stored_count(harness.bot)
        await harness.deliver("How do I install mmdet?", "contract-after-fuzz")
        await harness.bot.join()
        assert await stored_count(harness.bot) == before + 1
