"""web_search against a fake Serper-compatible API and fake web pages on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.app.services import build_services
from bot.config import Config, ConfigError
from bot.context import Chunk, TurnContext
from bot.pipeline import build_pipelines
from tests.fakes import ScriptedChatModel, make_message
from tests.llm.fake_servers import FakeSearch

pytestmark = pytest.mark.integration

ARTICLE = """<!doctype html><html><head><title>Installing MMDetection</title></head><body>
<nav><a href="/">Home</a> | <a href="/blog">Blog</a> | Subscribe to our newsletter</nav>
<article><h1>Installing MMDetection 3.x</h1>
<p>MMDetection 3.x needs PyTorch 1.8 or later and MMCV 2.0. First install MMCV with mim:
run <code>pip install -U openmim</code> and then <code>mim install "mmcv>=2.0.0"</code>.</p>
<p>Then install MMDetection itself from PyPI with <code>pip install mmdet</code>, or clone the
repository and run <code>pip install -v -e .</code> to develop against the source tree.</p>
<p>Check the installation by running the demo script on a sample image; it should print the
detected boxes and save a visualisation next to the input image.</p>
</article>
<footer>Copyright 2024 Example Blog. All rights reserved. Cookie settings.</footer>
</body></html>"""


def make_context(config: Config, chunks: list[Chunk] | None = None) -> TurnContext:
    message = make_message(text="How do I install mmdetection 3?")
    return TurnContext(
        message=message,
        message_id=1,
        config=config,
        group=config.group(message.conversation_id),
        question=message.text,
        chunks=chunks or [],
    )


def setup(config_factory: Callable[..., Config], search: FakeSearch, **options: Any) -> Any:
    settings = {
        "base_url": search.url,
        "api_key": "${TEST_SERPER_KEY}",
        "allow_private_addresses": True,  # the fake web is on 127.0.0.1
        **options,
    }
    config = config_factory(
        {"pipeline": ["web_search", "generate"], "middleware": {"web_search": settings}}
    )
    llm = ScriptedChatModel("Use mim to install mmcv, then pip install mmdet [1].")
    return config, llm, build_pipelines(build_services(config, llm=llm))[""]


@pytest.fixture
def search(monkeypatch: pytest.MonkeyPatch) -> FakeSearch:
    monkeypatch.setenv("TEST_SERPER_KEY", "test-serper-key")
    return FakeSearch()


async def test_weak_retrieval_searches_fetches_and_extracts_pages(
    config_factory: Callable[..., Config], search: FakeSearch
) -> None:
    async with search.running():
        search.pages = {
            "article": (200, "text/html", ARTICLE),
            "broken": (500, "text/html", "oops"),
            "paper.pdf": (200, "application/pdf", "%PDF-1.4"),
        }
        search.results = [
            {
                "title": "Installing MMDetection",
                "link": search.page_url("article"),
                "snippet": "MMDetection 3.x needs PyTorch",
            },
            {
                "title": "Broken page",
                "link": search.page_url("broken"),
                "snippet": "Snippet of the broken page.",
            },
            {"title": "A paper", "link": search.page_url("paper.pdf"), "snippet": "PDF snippet."},
            {"title": "Not fetched", "link": search.page_url("fourth"), "snippet": "Fourth."},
        ]
        config, llm, pipeline = setup(config_factory, search, sites=["mmdetection.readthedocs.io"])
        weak = [Chunk(text="unrelated", source="notes.md", score=0.03, scores={"dense": 0.2})]
        ctx = make_context(config, weak)
        reply = await pipeline.run(ctx)
    assert reply is not None
    assert search.queries == [
        {"q": "How do I install mmdetection 3? site:mmdetection.readthedocs.io", "num": 5}
    ]
    assert sorted(search.fetched) == ["article", "broken", "paper.pdf"]  # top 3 only
    web = ctx.chunks[1:]
    assert [c.title for c in web] == ["Installing MMDetection", "Broken page", "A paper"]
    article = web[0]
    assert article.url == article.source == search.page_url("article")
    assert 'mim install "mmcv>=2.0.0"' in article.text
    assert "newsletter" not in article.text and "Cookie" not in article.text
    assert web[1].text == "Snippet of the broken page."  # fetch failed: the snippet stands in
    assert web[2].text == "PDF snippet."
    assert 0.03 > web[0].score > web[1].score > web[2].score  # below the retrieved passage
    detail = ctx.trace[0].detail
    assert detail["searched"] is True and detail["pages"] == 3 and len(detail["failures"]) == 2
    assert f"[2] {article.url} § Installing MMDetection" in llm.calls[0][1]["content"]


async def test_strong_retrieval_does_not_search(
    config_factory: Callable[..., Config], search: FakeSearch
) -> None:
    async with search.running():
        config, _, pipeline = setup(config_factory, search)
        strong = [
            Chunk(text="pip install mmdet", source="install.md", score=0.03, scores={"dense": 0.8})
        ]
        ctx = make_context(config, strong)
        await pipeline.run(ctx)
    assert search.queries == [] and ctx.trace[0].detail["searched"] is False


async def test_search_failure_is_recorded_and_the_message_goes_on(
    config_factory: Callable[..., Config], search: FakeSearch
) -> None:
    async with search.running():
        search.search_status = 500
        config, _, pipeline = setup(config_factory, search)
        ctx = make_context(config)
        reply = await pipeline.run(ctx)
    assert reply is not None
    assert ctx.trace[0].detail["error"].startswith("search failed: Server error '500")


async def test_private_addresses_are_refused_by_default(
    config_factory: Callable[..., Config], search: FakeSearch
) -> None:
    async with search.running():
        search.pages = {"article": (200, "text/html", ARTICLE)}
        search.results = [
            {"title": "Inside", "link": search.page_url("article"), "snippet": "only the snippet"}
        ]
        config, _, pipeline = setup(config_factory, search, allow_private_addresses=False)
        ctx = make_context(config)
        await pipeline.run(ctx)
    assert search.fetched == []
    assert ctx.chunks[0].text == "only the snippet"
    assert "non-public address (127.0.0.1)" in ctx.trace[0].detail["failures"][0]


async def test_missing_api_key_fails_at_start_up(
    config_factory: Callable[..., Config], search: FakeSearch
) -> None:
    config = config_factory({"pipeline": ["web_search", "generate"]})
    pipeline = build_pipelines(build_services(config, llm=ScriptedChatModel()))[""]
    with pytest.raises(ConfigError, match=r"web_search\.api_key is empty"):
        await pipeline.warm_up()
