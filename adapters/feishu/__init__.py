"""Feishu / Lark: the adapter (lark-oapi), its settings and its message formats."""
