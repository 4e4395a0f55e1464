"""Plugins (middlewares and adapters) are named in bot.yaml: a built-in short name or a dotted
path ``package.module:Class``, imported only when bot.yaml uses them. No registry, no magic."""

from __future__ import annotations

import importlib
from typing import Any


def import_object(spec: str) -> Any:
    """Import ``package.module:Attribute``."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ImportError(f"{spec!r} is not of the form 'package.module:Name'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {attribute!r}") from None
