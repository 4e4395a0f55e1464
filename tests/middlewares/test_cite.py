"""The cite middleware: the references are the chunks the answer used, each source once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.app.services import build_services
from bot.config import Config
from bot.context import Chunk, TurnContext
from bot.message import Reference
from bot.pipeline import build_pipelines
from tests.fakes import ScriptedChatModel, make_message

pytestmark = pytest.mark.unit

CHUNKS = [
    Chunk(text="Install with pip install mmdet.", source="docs/install.md", title="Install"),
    Chunk(text="MMCV must match your CUDA version.", source="docs/mmcv.md", title="CUDA"),
    Chunk(
        text="Build mmcv from source with MMCV_WITH_OPS=1.",
        source="docs/install.md",
        title="Install",
    ),
    Chunk(
        text="Detectron-style configs live in configs/.",
        source="https://mmdet.readthedocs.io/x",
        title="Configs",
        url="https://mmdet.readthedocs.io/x",
    ),
]


async def run(config_factory: Callable[..., Config], answer: str, **options: Any) -> TurnContext:
    config = config_factory(
        {"pipeline": ["generate", "cite"], "middleware": {"cite": options} if options else {}}
    )
    pipeline = build_pipelines(build_services(config, llm=ScriptedChatModel(answer)))[""]
    message = make_message(text="How do I install mmdet?")
    ctx = TurnContext(
        message=message,
        message_id=1,
        config=config,
        group=config.group(message.conversation_id),
        question=message.text,
        chunks=list(CHUNKS),
    )
    await pipeline.run(ctx)
    return ctx


async def test_cited_chunks_become_references_renumbered_and_deduplicated(
    config_factory: Callable[..., Config],
) -> None:
    ctx = await run(config_factory, "Install mmcv to match CUDA [2], then pip install [1][3].")
    assert ctx.references == [
        Reference("docs/mmcv.md", "CUDA"),
        Reference("docs/install.md", "Install"),
    ]
    # [1] and [3] are the same section: one reference, and the text follows the new numbers.
    assert ctx.answer == "Install mmcv to match CUDA [1], then pip install [2]."
    assert ctx.trace[1].detail["method"] == "markers"


async def test_unknown_markers_are_dropped_and_urls_kept(
    config_factory: Callable[..., Config],
) -> None:
    ctx = await run(config_factory, "See the configs [4, 9] and 【4】.")
    assert ctx.references == [
        Reference("https://mmdet.readthedocs.io/x", "Configs", "https://mmdet.readthedocs.io/x")
    ]
    assert ctx.answer == "See the configs [1] and [1]."


async def test_without_markers_the_overlapping_chunks_are_kept(
    config_factory: Callable[..., Config],
) -> None:
    ctx = await run(config_factory, "Build mmcv from source and set MMCV_WITH_OPS=1.")
    assert ctx.references == [Reference("docs/install.md", "Install")]
    assert ctx.trace[1].detail["method"] == "overlap"


async def test_at_most_max_references(config_factory: Callable[..., Config]) -> None:
    ctx = await run(config_factory, "[1] [2] [4]", max_references=2)
    assert len(ctx.references) == 2
    assert ctx.answer == "[1] [2]"


async def test_reply_carries_the_references_for_the_adapter_to_render(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory({"pipeline": ["generate", "cite"]})
    pipeline = build_pipelines(build_services(config, llm=ScriptedChatModel("pip [1]")))[""]
    message = make_message(text="install?")
    ctx = TurnContext(
        message=message,
        message_id=1,
        config=config,
        group=config.group(message.conversation_id),
        question="install?",
        chunks=list(CHUNKS),
    )
    reply = await pipeline.run(ctx)
    assert reply is not None
    assert reply.render_plain() == "pip [1]\n\nReferences:\n[1] docs/install.md § Install"
