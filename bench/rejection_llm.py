"""reject.llm's question score on the rejection dev split: does the model tell questions apart?

Scores a stratified random sample of the dev queries with the `reject_question` prompt through
``bot.llm.scoring`` (grammar-constrained, expected score from token probabilities for a local
GGUF model) and prints the AUC and the F1 at the middleware's default threshold (5) and at the
best threshold. Default model: the bundled SmolLM2-135M; pass ``--model PATH`` for a real one.

    nice .venv/bin/python bench/rejection_llm.py [--model model.gguf] [--per-class 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import LLMSettings
from bot.llm.scoring import score
from bot.prompts import Prompts
from knowledge.text import detect_language

DEV = Path(__file__).resolve().parents[2] / "shared" / "bench" / "rejection-dev"


def read(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["query"] for line in lines if line.strip()]


async def main() -> None:
    from sklearn.metrics import f1_score, roc_auc_score

    from bot.llm.llama_cpp import LlamaCppChatModel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF chat model (default: the bundled one)")
    parser.add_argument("--per-class", type=int, default=40)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    good, bad = read(DEV / "good.jsonl"), read(DEV / "bad.jsonl")
    sample = [(q, 1) for q in rng.choice(good, args.per_class, replace=False)] + [
        (q, 0) for q in rng.choice(bad, args.per_class, replace=False)
    ]
    llm = LlamaCppChatModel(LLMSettings(model_path=args.model, n_ctx=1024))
    await llm.warm_up()
    prompts = Prompts()
    values, labels, unreadable, started = [], [], 0, time.perf_counter()
    for query, label in sample:
        prompt = prompts.render(
            "reject_question", detect_language(query), question=str(query), topic=""
        )
        result = await score(llm, [{"role": "user", "content": prompt}])
        if result.value is None:
            unreadable += 1
        values.append(5.0 if result.value is None else result.value)
        labels.append(label)
    seconds = time.perf_counter() - started
    y, s = np.array(labels), np.array(values)
    best = max(f1_score(y, s >= t) for t in np.unique(s))
    print(f"model: {llm.name}")
    print(
        f"{len(y)} queries ({args.per_class} good, {args.per_class} bad), "
        f"{seconds / len(y) * 1000:.0f} ms each, {unreadable} unreadable"
    )
    print(
        f"AUC {roc_auc_score(y, s):.3f}   F1 at 5: {f1_score(y, s >= 5):.3f}   "
        f"best F1: {best:.3f} (accepting everything: {2 / 3:.3f})"
    )
    print(f"mean score: good {s[y == 1].mean():.2f}, bad {s[y == 0].mean():.2f}")
    await llm.close()


if __name__ == "__main__":
    asyncio.run(main())
