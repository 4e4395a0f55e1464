"""Build the services from bot.yaml: the chat model, the knowledge base and the rejection gate.

Nothing is loaded or connected here: ``Services.warm_up`` and the middlewares' ``warm_up`` do
that at start-up.
"""

from __future__ import annotations

from bot.config import Config
from bot.llm.hybrid import HybridChatModel
from bot.llm.llama_cpp import LlamaCppChatModel
from bot.llm.openai_compatible import OpenAICompatibleChatModel
from bot.llm.protocol import ChatModel
from bot.prompts import Prompts
from bot.services import Services
from knowledge.knowledge_base import KnowledgeBase
from knowledge.rejection.gates import RejectionGates


def build_chat_model(config: Config) -> ChatModel:
    """The model for ``llm.backend``: a local GGUF, a remote OpenAI-compatible server, or both
    behind hybrid routing."""
    settings = config.llm
    if settings.backend == "llama_cpp":
        return LlamaCppChatModel(settings)
    if settings.backend == "openai":
        return OpenAICompatibleChatModel(settings.remote, settings)
    return HybridChatModel(
        LlamaCppChatModel(settings),
        OpenAICompatibleChatModel(settings.remote, settings),
        settings.routing,
    )


def build_knowledge(config: Config) -> KnowledgeBase | None:
    """The knowledge base from ``knowledge:`` (opening is cheap: warm_up loads it)."""
    if not config.knowledge.sources:
        return None
    return KnowledgeBase.open(config.knowledge, config.work_dir)


def pipeline_names(config: Config) -> set[str]:
    """Every middleware name in the default pipeline and the groups' own."""
    names = set(config.pipeline)
    for group in config.groups.values():
        names.update(group.pipeline or [])
    return names


def build_gates(config: Config, knowledge: KnowledgeBase | None) -> RejectionGates | None:
    """The rejection gates (global, and the groups' own), when a pipeline uses them and there
    is a knowledge base to score against (without one the middleware says what is missing at
    start-up)."""
    if knowledge is None or "reject.embedding" not in pipeline_names(config):
        return None
    collections = {cid: group.knowledge_collection for cid, group in config.groups.items()}
    return RejectionGates(knowledge, config.rejection, config.work_dir, collections)


def build_services(config: Config, llm: ChatModel | None = None) -> Services:
    knowledge = build_knowledge(config)
    return Services(
        config=config,
        prompts=Prompts(config.prompts.dir),
        llm=llm if llm is not None else build_chat_model(config),
        knowledge=knowledge,
        gates=build_gates(config, knowledge),
    )
