"""A GGUF model's tokenizer and chat template, loaded without its weights.

Used where exact token counts matter and the model itself runs elsewhere: prompt packing in
the daemon (the model runs in its own process), a remote model's tokenizer (``llm.remote.
tokenizer``), the model process's scoring prompts. A vocabulary runs no ggml kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.llm.protocol import MESSAGE_OVERHEAD_TOKENS, ChatMessage, LLMError, ModelError


class Vocabulary:
    """A model's tokenizer and chat template, without its weights: exact token counts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._model: Any = None
        self._formatter: Any = None

    def load(self) -> Any:
        if self._model is None:
            self._model = load_vocabulary(self.path)
            template = self._model.metadata().get("tokenizer.chat_template")
            if template:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                self._formatter = Jinja2ChatFormatter(
                    template=template,
                    eos_token=_token_text(self._model, self._model.token_eos()),
                    bos_token=_token_text(self._model, self._model.token_bos()),
                )
        return self._model

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        tokens: list[int] = self.load().tokenize(text.encode("utf-8"), False, special)
        return tokens

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def prompt(self, messages: list[ChatMessage]) -> str | None:
        """The chat prompt as the model sees it (the template from the GGUF metadata), or None
        when the GGUF has no template."""
        self.load()
        if self._formatter is None:
            return None
        return str(self._formatter(messages=list(messages)).prompt)

    def prompt_tokens(self, messages: list[ChatMessage]) -> list[int]:
        prompt = self.prompt(messages)
        if prompt is None:
            raise LLMError(f"{self.path.name} has no chat template in its metadata")
        return self.tokenize(prompt, special=True)

    def count_message_tokens(self, messages: list[ChatMessage]) -> int:
        if self.prompt(messages) is None:
            return sum(self.count_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)
        return len(self.prompt_tokens(messages))

    def close(self) -> None:
        model, self._model = self._model, None
        if model is not None:
            model.close()


def load_vocabulary(path: Path) -> Any:
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    try:
        return LlamaModel(path_model=str(path), params=params, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot read {path}'s vocabulary: {exc}") from exc


def _token_text(vocab: Any, token: int) -> str:
    return str(vocab.token_get_text(token)) if token != -1 else ""
