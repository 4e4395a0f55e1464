"""IM platform adapters: one module per platform, plus the local playground."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.base import Adapter
    from bot.config import Config


def build_adapters(config: Config) -> list[Adapter]:
    """The adapters enabled in bot.yaml. A platform's SDK is imported only when it is enabled."""
    adapters: list[Adapter] = []
    if config.adapters.playground.enabled:
        from adapters.playground import PlaygroundAdapter

        adapters.append(PlaygroundAdapter(config.adapters.playground, config.work_dir))
    feishu = config.adapters.feishu
    if feishu is not None and feishu.enabled:
        from adapters.feishu import FeishuAdapter

        adapters.append(FeishuAdapter(feishu))
    return adapters
