"""The answer prompts: every template renders in both languages; mistakes fail at start-up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.app.services import build_services
from bot.config import Config
from bot.context import Chunk, HistoryTurn
from bot.middlewares import generate, verify
from bot.pipeline import build_pipelines
from bot.prompts import LANGUAGES, PromptError, Prompts
from tests.fakes import ScriptedChatModel

pytestmark = pytest.mark.unit

TEMPLATES = {
    "system": generate.PROMPT_VARIABLES,
    "generate": generate.PROMPT_VARIABLES,
    "verify_grounded": verify.PROMPT_VARIABLES,
    "verify_relevant": verify.PROMPT_VARIABLES,
    "verify_safe": verify.PROMPT_VARIABLES,
}
VALUES = {
    "bot_name": "HuixiangDou",
    "topic": "mmdetection",
    "question": "How do I install mmdet?",
    "answer": "Run pip install mmdet [1].",
    "chunks": [Chunk(text="pip install mmdet", source="docs/install.md", title="Install")],
    "history": [HistoryTurn("bob", "hello", "hi bob")],
}


@pytest.mark.parametrize("name", list(TEMPLATES))
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_template_renders_in_both_languages(name: str, language: str) -> None:
    prompts = Prompts()
    prompts.check(name, TEMPLATES[name])
    text = prompts.render(name, language, **{k: VALUES[k] for k in TEMPLATES[name]})
    assert text and "{{" not in text and "{%" not in text
    chinese = any("\u4e00" <= ch <= "\u9fff" for ch in text)
    assert chinese == (language == "zh")


def test_a_missing_variable_fails_clearly_at_render() -> None:
    with pytest.raises(PromptError, match=r"generate\.en\.j2: 'question' is undefined"):
        Prompts().render("generate", "en", bot_name="x", topic="", chunks=[], history=[])


async def test_an_override_with_an_unknown_variable_fails_at_start_up(
    tmp_path: Path, config_factory: Callable[..., Config]
) -> None:
    folder = tmp_path / "my-prompts"
    folder.mkdir()
    (folder / "verify_safe.zh.j2").write_text("回复：{{ answer }} 用户：{{ user_name }}")
    config = config_factory({"pipeline": ["generate", "verify"], "prompts": {"dir": str(folder)}})
    pipeline = build_pipelines(build_services(config, llm=ScriptedChatModel()))[""]
    with pytest.raises(PromptError, match=r"verify_safe\.zh\.j2: uses undefined variable"):
        await pipeline.warm_up()


def test_admins_override_one_template(tmp_path: Path) -> None:
    (tmp_path / "system.en.j2").write_text("You are {{ bot_name }}. Be terse.")
    prompts = Prompts(tmp_path)
    assert prompts.render("system", "en", bot_name="Dou", topic="") == "You are Dou. Be terse."
    assert "你是Dou" in prompts.render("system", "zh", bot_name="Dou", topic="")
