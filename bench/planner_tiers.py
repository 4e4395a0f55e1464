"""The GGUF planner's decisions for the tier presets, as the README's table.

Writes sparse GGUF files that declare the published Qwen2.5 shapes at Q4_K_M (a few kilobytes of
disk each; see tests/llm/gguf_factory.py) and plans each for each tier, with 64 GiB of host
memory assumed so the table does not depend on this machine.

    .venv/bin/python bench/planner_tiers.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.llm.gguf_info import GGUFInfo
from bot.llm.planner import GIB, QWEN25, gib, plan_model
from bot.llm.tiers import TIERS
from tests.llm.gguf_factory import write_gguf


def main() -> None:
    print("| model (Q4_K_M) | file | tier | plan | GPU layers | n_ctx | KV | GPU use |")
    print("| --- | ---: | --- | --- | ---: | ---: | --- | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        for size, shape in QWEN25.items():
            info = GGUFInfo.read(write_gguf(Path(folder) / f"{size}.gguf", shape))
            for tier in TIERS.values():
                plan = plan_model(info, tier, ram_usable=64 * GIB)
                use = (
                    "-"
                    if tier.gpu_gib == 0
                    else f"{gib(plan.memory.gpu)} / {gib(plan.gpu_usable)}"
                )
                mark = " **(recommended)**" if shape.name in tier.recommended else ""
                print(
                    f"| {shape.name}{mark} | {info.file_size / 1e9:.2f} GB | {tier.name} | "
                    f"{plan.status} | {plan.n_gpu_layers}/{plan.n_layers + 1} | {plan.n_ctx} | "
                    f"{plan.kv_type} | {use} |"
                )


if __name__ == "__main__":
    main()
