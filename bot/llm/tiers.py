"""GPU size presets (``llm.tier`` in bot.yaml) and the model we recommend for each.

Kept apart from the planner so that parsing bot.yaml does not import the ``gguf`` package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tier:
    """A GPU size preset with the model we recommend for it."""

    name: str
    gpu_gib: float
    n_ctx: int
    recommended: str


TIERS: dict[str, Tier] = {
    "cpu": Tier("cpu", 0, 4096, "Qwen2.5-1.5B-Instruct Q4_K_M (1.0 GB file)"),
    "4gb": Tier("4gb", 4, 8192, "Qwen2.5-3B-Instruct Q4_K_M (1.9 GB file)"),
    "20gb": Tier("20gb", 20, 32768, "Qwen2.5-14B-Instruct Q4_K_M (9.0 GB file)"),
    "40gb": Tier("40gb", 40, 32768, "Qwen2.5-32B-Instruct Q4_K_M (19.9 GB file)"),
}
_TIER_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:gb|gib|g)?\s*$", re.IGNORECASE)


def parse_tier(value: str | float) -> Tier:
    """``cpu``, ``4gb``, ``20gb``, ``40gb``, or a GPU memory size such as ``12gb`` / ``12``."""
    text = str(value).strip().lower()
    if text in TIERS:
        return TIERS[text]
    match = _TIER_PATTERN.match(text)
    if match is None:
        raise ValueError(
            f"tier {value!r} is not one of {', '.join(TIERS)} or a GPU memory size like '12gb'"
        )
    gib = float(match.group(1))
    if gib == 0:
        return TIERS["cpu"]
    # The context and recommendation of the nearest preset, by ratio (16 GiB is a 20gb card).
    gpu_tiers = [t for t in TIERS.values() if t.gpu_gib > 0]
    nearest = min(gpu_tiers, key=lambda t: max(t.gpu_gib / gib, gib / t.gpu_gib))
    return Tier(f"{gib:g}gb", gib, nearest.n_ctx, nearest.recommended)
