"""Is the configured chat model worth asking for answers?

A model far below a billion parameters (the bundled SmolLM2-135M) writes fluent nonsense: a
newcomer's first answer would be a confident wrong one. Without a capable model the ``extract``
middleware answers instead, quoting the documentation. ``llm.capable`` says it outright; left
null, a local GGUF model is judged by the parameter count in its header (read without loading
the weights), and a remote model is taken to be capable.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import LLMSettings
from bot.llm.gguf_info import GGUFError, GGUFInfo
from bot.llm.llama_cpp import ModelError, resolve_model_path

# The smallest model we recommend (Qwen2.5-1.5B-Instruct, README "Models and answers") has
# 1.5 billion parameters; the bundled demo model has 0.135 billion.
MIN_PARAMETERS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Capability:
    capable: bool
    why: str


def capability(settings: LLMSettings) -> Capability:
    """Whether answers should come from the chat model, and why (for the trace)."""
    if settings.capable is not None:
        return Capability(settings.capable, f"llm.capable is {str(settings.capable).lower()}")
    if settings.backend == "openai":
        return Capability(True, "a remote model (set llm.capable: false to quote instead)")
    if settings.backend == "hybrid" and settings.routing.answers == "remote":
        return Capability(True, "answers go to the remote model")
    try:
        path = resolve_model_path(settings)
        parameters = GGUFInfo.read(path).n_params
    except (ModelError, GGUFError) as exc:
        return Capability(False, f"the local model cannot be read: {exc}")
    size = f"{path.name} has {parameters / 1e9:.2f} billion parameters"
    if parameters < MIN_PARAMETERS:
        return Capability(False, f"{size}, fewer than {MIN_PARAMETERS / 1e9:g} billion")
    return Capability(True, size)
