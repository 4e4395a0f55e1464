"""Chat models: the protocol the pipeline talks to, and its implementations."""

from bot.llm.protocol import ChatMessage, ChatModel, Completion

__all__ = ["ChatMessage", "ChatModel", "Completion"]
