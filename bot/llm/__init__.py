"""Chat models: the protocol the pipeline talks to, and its implementations."""

from bot.llm.base import ChatMessage, ChatModel, Completion

__all__ = ["ChatMessage", "ChatModel", "Completion"]
