"""The extract middleware: without a capable chat model, the bot quotes the documentation.

Through the real pipeline (normalize, retrieve, extract, generate, cite) over the documentation
this repository ships (docs/ and README.md, the knowledge base of `make run`), in Chinese and
English; the scripted model stands in for the bundled one and must never be asked."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app.services import build_services
from bot.config import Config, LLMSettings
from bot.context import Chunk, TurnContext
from bot.llm.capability import capability
from bot.middlewares.extract import quote, units, window
from bot.pipeline import Pipeline, build_pipelines
from bot.services import Services
from knowledge.bm25 import Tokenizer
from knowledge.embedders import UseEmbedder
from knowledge.knowledge_base import KnowledgeBase
from knowledge.settings import EmbedderSettings, KnowledgeSettings
from tests.fakes import ScriptedChatModel, make_message

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TWINS = REPO / "tests" / "data" / "knowledge" / "twins"
PIPELINE = ["normalize", "retrieve", "extract", "generate", "cite"]
ZH_INTRO = "文档中的相关内容 [1]："
SHIPPED = [{"path": str(REPO / "docs")}, {"path": str(REPO / "README.md")}]


@pytest.fixture(scope="module")
def use_embedder() -> UseEmbedder:
    embedder = UseEmbedder(EmbedderSettings())
    embedder.warm_up()
    return embedder


def build_index(
    root: Path,
    sources: list[dict[str, Any]],
    embedder: Any,
    chunking: dict[str, int] | None = None,
) -> Path:
    settings = KnowledgeSettings.model_validate({"sources": sources, "chunking": chunking or {}})
    kb = KnowledgeBase(settings, root, embedder=embedder)
    kb.build(progress=False)
    kb.close()
    return root


@pytest.fixture(scope="module")
def shipped_work(tmp_path_factory: pytest.TempPathFactory, use_embedder: Any) -> Iterator[Path]:
    """The shipped documentation, indexed once for the module."""
    root = tmp_path_factory.mktemp("shipped")
    yield build_index(root, SHIPPED, use_embedder)
    shutil.rmtree(root, ignore_errors=True)


async def start(
    config_factory: Callable[..., Config],
    work: Path,
    sources: list[dict[str, Any]],
    chunking: dict[str, int] | None = None,
    pipeline: list[str] = PIPELINE,
    **extra: Any,
) -> tuple[Services, Pipeline, ScriptedChatModel]:
    knowledge: dict[str, Any] = {"sources": sources}
    if chunking:
        knowledge["chunking"] = chunking
    config = config_factory(
        {"bot": {"work_dir": str(work)}, "pipeline": pipeline, "knowledge": knowledge, **extra}
    )
    llm = ScriptedChatModel("the model's answer [1]")
    services = build_services(config, llm=llm)
    await services.warm_up()
    pipeline = build_pipelines(services)[""]
    await pipeline.warm_up()
    return services, pipeline, llm


async def ask(
    services: Services, pipeline: Pipeline, text: str, chunks: list[Chunk] | None = None
) -> TurnContext:
    """The pipeline's turn on a question; ``chunks``: passages as retrieve would hand them
    over (for a pipeline without retrieve)."""
    message = make_message(text=text)
    ctx = TurnContext(
        message=message,
        message_id=1,
        config=services.config,
        group=services.config.group(message.conversation_id),
        question=text,
    )
    ctx.chunks = list(chunks or [])
    await pipeline.run(ctx)
    return ctx


def step(ctx: TurnContext, name: str) -> dict[str, Any]:
    return next(s for s in ctx.trace if s.name == name).detail


@pytest.mark.parametrize(
    ("question", "intro", "source", "said"),
    [
        (
            "知识库支持哪些文件格式？",
            "文档中的相关内容 [1]：",
            "docs/知识库.md",
            "reStructuredText",
        ),
        ("怎么增量更新知识库", "文档中的相关内容 [1]：", "docs/知识库.md", "内容哈希"),
        (
            "how do I add my own documents to the knowledge base?",
            "From the documentation [1]:",
            "docs/faq.md",
            "knowledge.sources",
        ),
        (
            "how do I run several bot workers, where do the vectors live?",
            "From the documentation [1]:",
            "docs/faq.md",
            "chroma",
        ),
    ],
)
async def test_without_a_capable_model_the_bot_quotes_the_shipped_docs(
    config_factory: Callable[..., Config],
    shipped_work: Path,
    question: str,
    intro: str,
    source: str,
    said: str,
) -> None:
    services, pipeline, llm = await start(config_factory, shipped_work, SHIPPED)
    ctx = await ask(services, pipeline, question)

    assert ctx.decision == "answered", ctx.trace_dicts()
    answer = ctx.answer or ""
    assert answer.startswith(intro + "\n> ")
    assert said in answer and len(answer) <= 700
    assert ctx.references[0].source == source
    assert llm.calls == []  # the bundled model is never asked
    assert step(ctx, "extract")["quoted"][0]["source"] == source
    assert "billion parameters" in step(ctx, "extract")["model"]
    assert step(ctx, "generate") == {"skipped": "already answered"}
    await services.close()


async def test_nothing_to_quote_is_silence_not_nonsense(
    config_factory: Callable[..., Config], shipped_work: Path
) -> None:
    services, pipeline, llm = await start(config_factory, shipped_work, SHIPPED)
    # Close enough to the docs for retrieve (how the bot joins a platform's groups), but no
    # passage says it: the bot has no Slack adapter. The learned ranker doubts every page.
    ctx = await ask(services, pipeline, "怎么接入 Slack")
    assert ctx.decision == "ignored: no-knowledge"
    assert ctx.answer is None and llm.calls == []
    extract = next(s for s in ctx.trace if s.name == "extract")
    assert extract.verdict == "ignored: no-knowledge" and extract.threshold == 0.25
    assert extract.score is not None and extract.score < 0.25
    assert "doubts" in extract.detail["why"]
    await services.close()


async def test_a_capable_model_answers_and_extract_steps_aside(
    config_factory: Callable[..., Config], shipped_work: Path
) -> None:
    services, pipeline, llm = await start(
        config_factory, shipped_work, SHIPPED, llm={"capable": True}
    )
    ctx = await ask(services, pipeline, "how do I add my own documents to the knowledge base?")
    assert ctx.decision == "answered" and len(llm.calls) == 1
    assert ctx.answer == "the model's answer [1]"
    assert step(ctx, "extract") == {
        "skipped": "the chat model answers",
        "why": "llm.capable is true",
    }
    await services.close()

    services, pipeline, llm = await start(
        config_factory,
        shipped_work,
        SHIPPED,
        llm={"capable": True},
        middleware={"extract": {"when": "always"}},
    )
    ctx = await ask(services, pipeline, "how do I add my own documents to the knowledge base?")
    assert ctx.decision == "answered" and llm.calls == []
    assert (ctx.answer or "").startswith("From the documentation [1]:")
    await services.close()


@pytest.mark.parametrize(
    ("question", "source", "intro"),
    [
        ("怎么把模型量化成 int8？", "twins/docs/zh_cn/quantization.md", "文档中的相关内容"),
        ("how do I quantize a model to int8?", "twins/docs/en/quantization.md", "From the"),
    ],
)
async def test_the_quote_comes_from_the_page_in_the_question_language(
    config_factory: Callable[..., Config],
    tmp_path: Path,
    use_embedder: Any,
    question: str,
    source: str,
    intro: str,
) -> None:
    sources = [{"path": str(TWINS)}]
    work = build_index(tmp_path / "twins-work", sources, use_embedder)
    services, pipeline, llm = await start(config_factory, work, sources)
    ctx = await ask(services, pipeline, question)
    assert ctx.decision == "answered" and llm.calls == []
    assert (ctx.answer or "").startswith(intro)
    assert "python tools/quantize.py" in (ctx.answer or "")
    assert ctx.references[0].source == source
    await services.close()


RESUME = """# Training guide

## Resume an interrupted training run

A training run can stop halfway: the machine reboots, the job is preempted, or the GPU runs out \
of memory. The trainer saves a checkpoint at the end of every epoch into the work directory, \
next to the log files. Each checkpoint holds the model weights, the optimizer state and the \
learning-rate schedule. Nothing of the finished epochs is lost when the run stops.

Start the same command again with the flag and the checkpoint to continue from:

```shell
python tools/train.py config.py --resume work_dirs/epoch_7.pth
```

The log says which epoch it resumed from (https://docs.example.org/resume).

## Evaluate a checkpoint

Run `python tools/test.py config.py work_dirs/epoch_12.pth` to print the metrics.
"""


async def test_the_quote_reads_on_where_the_index_cut_the_section(
    config_factory: Callable[..., Config], tmp_path: Path, use_embedder: Any
) -> None:
    """Small chunks cut the section before its command; the quote reads on to it, without
    repeating the chunks' overlap and without running into the next section. The guard lets
    the link it read on to through: the documentation gave it."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "training.md").write_text(RESUME, encoding="utf-8")
    sources, chunking = [{"path": str(docs)}], {"max_tokens": 64, "overlap_tokens": 32}
    work = build_index(tmp_path / "work", sources, use_embedder, chunking)
    with_guard = ["normalize", "retrieve", "guard", "extract", "generate", "cite"]
    services, pipeline, llm = await start(
        config_factory,
        work,
        sources,
        chunking,
        with_guard,
        middleware={"retrieve": {"k": 1}},  # the link is only in the text read on
    )
    ctx = await ask(services, pipeline, "the machine rebooted halfway, is the training run lost?")
    assert ctx.decision == "answered", ctx.trace_dicts()
    assert llm.calls == []
    assert ctx.chunks[0].text.startswith("A training run can stop halfway")
    answer = " ".join((ctx.answer or "").split())
    assert "--resume work_dirs/epoch_7.pth" in answer
    assert "https://docs.example.org/resume" in answer
    assert answer.count("Nothing of the finished epochs is lost") == 1
    assert "tools/test.py" not in answer
    await services.close()


DEPLOY = """# Deployment

## Overview

Models are deployed with tools/deploy.py, which converts a trained checkpoint into a model for
the backend you choose and checks that both give the same outputs.

## Int8 quantization

Int8 engines need a calibration dataset: pass --calib-dataset data/calib to tools/deploy.py and
it feeds those images through the model once to measure the ranges.
"""


async def test_the_quote_looks_in_the_documents_next_best_chunks(
    config_factory: Callable[..., Config], tmp_path: Path, use_embedder: Any
) -> None:
    """Search ranked a chunk of the right page that does not say it (the overview); the section
    that does is one of the page's next-best chunks, which the hit names: it is quoted, and the
    reference names its section."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deploy.md").write_text(DEPLOY, encoding="utf-8")
    sources, chunking = [{"path": str(docs)}], {"max_tokens": 64, "overlap_tokens": 0}
    work = build_index(tmp_path / "work", sources, use_embedder, chunking)
    config = config_factory(
        {
            "bot": {"work_dir": str(work)},
            "pipeline": ["extract", "cite"],
            "knowledge": {"sources": sources, "chunking": chunking},
        }
    )
    services = build_services(config, llm=ScriptedChatModel("never asked"))
    await services.warm_up()
    kb = services.knowledge
    assert kb is not None
    ids, _, _ = kb.manifest.all_tokens()
    rows = kb.manifest.chunks(ids)
    overview = next(r for r in rows.values() if r.title.endswith("Overview"))
    int8 = next(r for r in rows.values() if r.title.endswith("Int8 quantization"))
    ranked = Chunk(
        overview.text,
        overview.source,
        overview.title,
        score=0.9,
        chunk_id=overview.id,
        alternatives=[int8.id],
    )
    question = "which calibration dataset option for an int8 engine?"
    ctx = await ask(services, build_pipelines(services)[""], question, [ranked])
    assert ctx.decision == "answered", ctx.trace_dicts()
    answer = " ".join((ctx.answer or "").split())
    assert "--calib-dataset data/calib" in answer and "same outputs" not in answer
    assert [r.title for r in ctx.references] == [int8.title]
    await services.close()


async def answer_from(
    config_factory: Callable[..., Config], question: str, chunks: list[Chunk]
) -> TurnContext:
    """Run extract and cite on passages as retrieve would hand them over (no knowledge base)."""
    config = config_factory({"pipeline": ["extract", "cite"]})
    services = build_services(config, llm=ScriptedChatModel("never asked"))
    await services.warm_up()
    ctx = await ask(services, build_pipelines(services)[""], question, chunks)
    await services.close()
    return ctx


async def test_a_page_the_ranker_is_sure_of_is_quoted_in_other_words(
    config_factory: Callable[..., Config],
) -> None:
    """A question that says in its own words what the page says in others: the passage holds
    few of its terms. Quoted when the learned ranker is sure the page answers, silence when
    it is not."""
    question = "the server rebooted in the middle of training, is all my progress gone now?"
    passage = "Training progress survives: it resumes from the last checkpoint with --resume."

    def asked(ranker: float) -> Chunk:
        return Chunk(passage, "train.md", score=ranker, scores={"ranker": ranker})

    ctx = await answer_from(config_factory, question, [asked(0.9)])
    assert ctx.decision == "answered", ctx.trace_dicts()
    assert "--resume" in (ctx.answer or "")
    ctx = await answer_from(config_factory, question, [asked(0.4)])
    extract = next(s for s in ctx.trace if s.name == "extract")
    assert ctx.decision == "ignored: no-knowledge"
    assert extract.score is not None and 0.15 <= extract.score < 0.3


async def test_a_page_the_ranker_doubts_is_not_quoted_however_many_words_it_shares(
    config_factory: Callable[..., Config],
) -> None:
    """A question the pages do not answer still shares its words with some page (the same
    product, the same feature). When the learned ranker doubts that page answers, quoting it
    would be noise: silence, and the trace says why. Without a ranker's probability (the
    ranker off, or a reranker's passages), the words decide alone."""
    question = "does the converter support exporting to coreml?"
    passage = "The converter supports exporting to ONNX and TensorRT."

    def asked(scores: dict[str, float]) -> Chunk:
        return Chunk(passage, "deploy.md", score=0.5, scores=scores)

    ctx = await answer_from(config_factory, question, [asked({"ranker": 0.1})])
    extract = next(s for s in ctx.trace if s.name == "extract")
    assert ctx.decision == "ignored: no-knowledge" and ctx.answer is None
    assert extract.score == 0.1 and extract.threshold == 0.25
    assert "doubts" in extract.detail["why"]
    for scores in ({"ranker": 0.3}, {}):
        ctx = await answer_from(config_factory, question, [asked(scores)])
        assert ctx.decision == "answered", ctx.trace_dicts()
        assert "ONNX and TensorRT" in (ctx.answer or "")


async def test_the_rankers_best_passage_is_quoted_first_when_it_says_enough(
    config_factory: Callable[..., Config],
) -> None:
    """The ranker's first passage holds enough of the question's terms, a lower-ranked one all
    of them: the first is quoted first (term overlap does not overrule the ranker), the second
    as "see also"."""
    ctx = await answer_from(
        config_factory,
        "how do I resume a run",
        [
            Chunk(
                "Pass --resume to continue a stopped run from its checkpoint.",
                "train.md",
                score=0.9,
            ),
            Chunk("How do I resume a run? Start it again.", "faq.md", score=0.6),
        ],
    )
    answer = ctx.answer or ""
    assert answer.startswith("From the documentation [1]:\n> Pass --resume"), answer
    assert "See also [2]:\n> How do I resume a run?" in answer
    assert [r.source for r in ctx.references] == ["train.md", "faq.md"]


@pytest.mark.parametrize(
    "question",
    [
        "hi guys, how can I resume a run? anyone?",
        "各位大佬 有没有人知道 断点续训 咋办 啥命令 谢谢",
    ],
)
async def test_words_that_ask_do_not_count_against_a_passage(
    config_factory: Callable[..., Config], question: str
) -> None:
    """Asking words are rare in documentation, so they would weigh most; the passage that
    says what is asked about is quoted however chatty the question."""
    passage = "Pass --resume to continue a stopped run. 断点续训：训练命令加上 --resume 即可。"
    ctx = await answer_from(config_factory, question, [Chunk(passage, "train.md", score=0.9)])
    assert ctx.decision == "answered", ctx.trace_dicts()
    assert "--resume" in (ctx.answer or "")


async def test_a_passage_that_repeats_the_quote_or_shows_an_answer_is_left_out(
    config_factory: Callable[..., Config],
) -> None:
    """Another repository's copy of the FAQ entry adds nothing; nor does a README that shows a
    sample answer of the bot (the shipped README does): neither is quoted as "see also"."""
    entry = "Pass --resume to continue a stopped run from its checkpoint."
    sample = f"```\nFrom the documentation [1]:\n> {entry}\n\nReferences:\n[1] faq.md\n```"
    for copy in (entry, sample):
        ctx = await answer_from(
            config_factory,
            "how do I resume a stopped run from a checkpoint",
            [Chunk(entry, "faq.md", score=0.9), Chunk(copy, "other/faq.md", score=0.85)],
        )
        answer = ctx.answer or ""
        assert answer.startswith(f"From the documentation [1]:\n> {entry}"), answer
        assert "See also" not in answer and answer.count("--resume") == 1
        assert [r.source for r in ctx.references] == ["faq.md"]
    # A passage that says something else is still quoted beside it.
    other = "A stopped run keeps its checkpoint; resume it with the same config on any machine."
    ctx = await answer_from(
        config_factory,
        "how do I resume a stopped run from a checkpoint",
        [Chunk(entry, "faq.md", score=0.9), Chunk(other, "guide.md", score=0.85)],
    )
    assert "See also [2]:" in (ctx.answer or "")


def test_passages_are_cut_into_quotable_pieces() -> None:
    text = (
        "Install the released package\nfrom PyPI:\n\n```shell\npip install mmfoo\n```\n\n"
        "- first item\n- second item\n  wrapped\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n\n"
        "## A heading\n\n配置文件在\n`configs/` 目录里。然后运行。"
    )
    assert units(text) == [
        ("Install the released package from PyPI:", False),
        ("```shell\npip install mmfoo\n```", True),
        ("- first item", False),
        ("- second item wrapped", False),
        ("| a | b |\n| --- | --- |\n| 1 | 2 |", True),
        ("配置文件在 `configs/` 目录里。", False),
        ("然后运行。", False),
    ]


def test_the_quote_is_the_run_that_holds_the_question() -> None:
    tokenize = Tokenizer()
    pieces = [
        ("MMFoo detects objects.", False),
        ("It is built on PyTorch.", False),
        ("Install it with pip:", False),
        ("```shell\npip install mmfoo\n```", True),
        ("Then check the version.", False),
    ]
    terms = [set(tokenize(text)) for text, _ in pieces]
    weights = [({t}, 1.0) for t in tokenize("install with pip")]
    # Room for everything: the whole passage.
    assert window(pieces, terms, weights, 1000) == [0, 1, 2, 3, 4]
    # Room for a little: the earliest run holding every term, with the code it introduces.
    picked = window(pieces, terms, weights, 60)
    assert picked == [2, 3]
    assert quote(pieces, picked, 60) == (
        "> …\n> Install it with pip:\n```shell\npip install mmfoo\n```\n> …"
    )


def test_a_passage_that_begins_mid_sentence_is_quoted_from_its_first_whole_one() -> None:
    tokenize = Tokenizer()
    # The chunker began this chunk with the end of the one before, cut at a colon.
    pieces = [
        ("stream connected`.", False),
        ("Why is the bot silent?", False),
        ("It was not mentioned.", False),
    ]
    terms = [set(tokenize(text)) for text, _ in pieces]
    weights = [({t}, 1.0) for t in tokenize("why is the bot silent in the group")]
    picked = window(pieces, terms, weights, 600)
    assert picked == [1, 2]
    assert quote(pieces, picked, 600) == "> …\n> Why is the bot silent?\n> It was not mentioned."
    # A passage that begins with a whole sentence is quoted from there.
    pieces[0] = ("The stream is connected.", False)
    assert window(pieces, [set(tokenize(t)) for t, _ in pieces], weights, 600) == [0, 1, 2]


def test_code_a_quoted_sentence_introduces_is_cut_to_fit() -> None:
    tokenize = Tokenizer()
    code = "```python\n" + "\n".join(f"config.option_{i} = {i}" for i in range(40)) + "\n```"
    pieces = [
        ("Long prompts need a larger session.", False),
        ("Set the session length and the rope scaling factor like this:", False),
        (code, True),
        ("That is all.", False),
    ]
    terms = [set(tokenize(text)) for text, _ in pieces]
    weights = [({t}, 1.0) for t in tokenize("rope scaling factor for long prompts")]
    picked = window(pieces, terms, weights, 300)
    assert picked == [0, 1, 2]  # the code does not fit whole, yet comes along
    quoted = quote(pieces, picked, 300)
    assert quoted.startswith("> Long prompts need a larger session.\n> Set the session")
    assert "```python\nconfig.option_0 = 0\n" in quoted and "option_39" not in quoted
    assert quoted.endswith("…\n```\n> …") and len(quoted) <= 300 + 20
    # With little room left, the code stays out rather than be quoted as a line or two.
    assert window(pieces, terms, weights, 120) == [0, 1]


def test_which_models_are_capable() -> None:
    bundled = capability(LLMSettings())
    assert not bundled.capable and "fewer than 1 billion" in bundled.why
    assert capability(LLMSettings(backend="openai")).capable
    assert capability(LLMSettings(capable=True)).capable
    assert not capability(LLMSettings(backend="openai", capable=False)).capable
    missing = capability(LLMSettings(model_path=REPO / "no-such-model.gguf"))
    assert not missing.capable and "cannot be read" in missing.why
