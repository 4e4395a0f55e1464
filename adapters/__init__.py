"""IM platform adapters: one package per platform, plus the local playground and the console.

Each is a plugin named under ``adapters:`` in bot.yaml (``bot.adapter.BUILTIN_ADAPTERS``);
``common/`` holds what they all share.
"""
