"""The cost of running the model in a supervised process of its own, and the time it takes to
come back after a crash.

1. Answers: the same rendered prompt (three passages of MMDetection's install guide and a
   question, as `generate` packs it) streamed through the bot's model process
   (``LlamaCppChatModel``: HTTP to ``python -m bot.llm.serve``) and through a bare in-process
   ``llama_cpp.Llama``, greedy, same settings (n_ctx, batch, ``--threads`` for both prompt and
   generation). Each round asks another question of both, alternating which goes first; each
   side has its own prompt-prefix cache, so the cache helps both alike. Time to first token,
   total time, generation tokens/s (pieces after the first, per second after it), and the CPU
   time each call cost (the model process's and this process's together, from /proc): on a
   shared machine the wall clock moves by tens of percent with other load, CPU time hardly.
2. Scoring: a 0-10 scoring prompt (``verify_relevant`` with the same passages) through the
   process's scoring route against the same scoring code on the bare ``Llama``.
3. Recovery: the model process is killed (SIGKILL) while idle; the time until a short question
   is answered again (restart, model load, the answer).

    nice .venv/bin/python bench/model_process.py --rounds 12 --threads 1

Prints medians and the overheads (goal: at most 5%).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generate_overhead import QUESTIONS, bare_llama, bare_stream, chunks, context

from bot.app.services import build_services
from bot.config import load_config
from bot.llm.llama_cpp import LlamaCppChatModel
from bot.llm.protocol import ChatMessage, Truncated
from bot.llm.serve import Scorer
from bot.llm.supervisor import ModelCrashed
from bot.middlewares.generate import Generate
from bot.pipeline import build_pipelines

SHORT: list[ChatMessage] = [{"role": "user", "content": "What is the capital of France?"}]


async def ours_stream(
    model: LlamaCppChatModel, messages: Any, max_tokens: int
) -> AsyncIterator[str]:
    try:
        async for piece in model.stream(messages, max_tokens=max_tokens, temperature=0.0):
            yield piece
    except Truncated:
        return  # a bench answer may run to max_tokens; timing is what counts here


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user and system, every thread) used so far by this process, or by ``pid``."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall clock, token stamps and CPU time of one call; ``pid`` adds a process's CPU."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self.stamps: list[float] = []
        self.cpu = self._cpu()
        self.started = time.perf_counter()

    def _cpu(self) -> float:
        return cpu_seconds() + (cpu_seconds(self.pid) if self.pid else 0.0)

    def piece(self) -> None:
        self.stamps.append(time.perf_counter())

    def done(self) -> dict[str, float]:
        done = time.perf_counter()
        stamps = self.stamps or [done]
        generating = stamps[-1] - stamps[0]
        return {
            "ttft": stamps[0] - self.started,
            "total": done - self.started,
            "rate": (len(stamps) - 1) / generating if generating > 0 else 0.0,
            "cpu": self._cpu() - self.cpu,
        }


def summary(label: str, runs: list[dict[str, float]]) -> None:
    ttft, total, rate, cpu = (statistics.median(r[k] for r in runs) for k in RUN_KEYS)
    print(f"| {label} | {ttft * 1000:.0f} | {total * 1000:.0f} | {rate:.1f} | {cpu * 1000:.0f} |")


def overhead(name: str, bare: list[float], ours: list[float]) -> None:
    medians = 100 * (statistics.median(ours) / statistics.median(bare) - 1)
    paired = 100 * (statistics.median(o / b for b, o in zip(bare, ours, strict=True)) - 1)
    print(f"  {name}: {medians:+.1f}% (medians), {paired:+.1f}% (median of per-round ratios)")


RUN_KEYS = ("ttft", "total", "rate", "cpu")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--crashes", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        yaml = Path(work) / "bot.yaml"
        yaml.write_text(
            f"bot: {{work_dir: {work}}}\npipeline: [generate]\n"
            f"llm: {{n_ctx: 2048, n_threads: {args.threads}, temperature: 0.0, "
            f"max_tokens: {args.max_tokens}, process: {{crash_loop_crashes: 1000, "
            f"restart_initial_seconds: 0}}}}\n"
        )
        config = load_config(yaml)
        model = LlamaCppChatModel(config.llm)
        services = build_services(config, llm=model)
        generate = build_pipelines(services)[""].middlewares[0]
        assert isinstance(generate, Generate)
        await services.warm_up()
        bare = bare_llama(model, config.llm.seed, args.threads)
        scorer = Scorer(model.vocabulary)
        passages = chunks()
        penalty = config.llm.repeat_penalty
        print(
            f"model {model.model_path.name}: {model.plan.summary()}, {args.threads} thread(s), "
            f"load average {os.getloadavg()[0]:.1f}"
        )

        answers: dict[str, list[dict[str, float]]] = {"bare": [], "ours": []}
        scores: dict[str, list[dict[str, float]]] = {"bare": [], "ours": []}
        for i in range(args.rounds + 1):  # round 0 warms both up and is not counted
            question = QUESTIONS[i % len(QUESTIONS)]
            ctx = context(config, question, passages)
            messages = generate.pack_for(model, ctx).messages
            score_prompt = services.prompts.render(
                "verify_relevant",
                "en",
                bot_name="bot",
                topic="",
                question=question,
                answer="Install it with pip install mmdet, then verify with the demo script.",
                chunks=passages,
            )
            score_messages: list[ChatMessage] = [{"role": "user", "content": score_prompt}]
            for side in ("ours", "bare") if i % 2 else ("bare", "ours"):
                if side == "bare":
                    meter = Meter()
                    for _ in bare_stream(bare, messages, args.max_tokens, penalty):
                        meter.piece()
                    answer = meter.done()
                    meter = Meter()
                    scorer.score(bare, score_messages)
                else:
                    meter = Meter(model.process.pid)
                    async for _ in ours_stream(model, messages, args.max_tokens):
                        meter.piece()
                    answer = meter.done()
                    meter = Meter(model.process.pid)
                    await model.score(score_messages)
                if i:
                    answers[side].append(answer)
                    scores[side].append(meter.done())
        prompt = model.count_message_tokens(messages)
        scoring = model.count_message_tokens(score_messages)
        print(
            f"answer prompt {prompt} tokens, up to {args.max_tokens} generated; scoring prompt "
            f"{scoring} tokens; load average now {os.getloadavg()[0]:.1f}\n"
        )
        print("| path | first token (ms) | total (ms) | generation tokens/s | CPU (ms) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        summary("answer, bare llama-cpp-python in-process", answers["bare"])
        summary("answer, the bot's model process (HTTP)", answers["ours"])
        summary("scoring, bare (the same scoring code)", scores["bare"])
        summary("scoring, the bot's model process (HTTP)", scores["ours"])
        print("\noverhead of the model process (goal: <= 5%):")
        for runs, what in ((answers, "answer"), (scores, "scoring")):
            for key, name in (("ttft", "first token"), ("total", "total"), ("cpu", "CPU time")):
                bare_values = [r[key] for r in runs["bare"]]
                overhead(f"{what} {name}", bare_values, [r[key] for r in runs["ours"]])
        rates = [r["rate"] for r in answers["bare"]], [r["rate"] for r in answers["ours"]]
        overhead("generation tokens/s", *rates)
        bare.close()

        recoveries = []
        for _ in range(args.crashes):
            await model.complete(SHORT, max_tokens=4)  # up and warm
            os.kill(model.process.pid or 0, signal.SIGKILL)
            started = time.perf_counter()
            try:
                await model.complete(SHORT, max_tokens=4)
            except ModelCrashed:  # it went to the dying process: asked once more, as callers do
                await model.complete(SHORT, max_tokens=4)
            recoveries.append(time.perf_counter() - started)
        print(
            f"\nfrom SIGKILL to answering again ({args.crashes} crashes): median "
            f"{statistics.median(recoveries):.2f}s, max {max(recoveries):.2f}s (no restart "
            "backoff here; by default a first crash waits 0.5s more)"
        )
        await services.close()


if __name__ == "__main__":
    asyncio.run(main())
