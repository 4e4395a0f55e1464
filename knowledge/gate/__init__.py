"""The rejection gate: decide which group messages are real questions about the knowledge base.

Kept light on purpose: ``bot.config`` imports ``knowledge.gate.settings`` for the ``rejection:``
section, so nothing here may import models, scikit-learn or the knowledge base at import time.
"""
