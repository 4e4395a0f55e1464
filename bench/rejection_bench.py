"""Rejection benchmark: the gate on HuixiangDou's labelled group-chat queries (dev split).

Builds (or reuses) the OpenMMLab documentation index through the knowledge API, computes the
gate's features for the 568 dev queries, and reports with stratified 5-fold cross-validation
(the threshold chosen inside each training fold, so nothing is tuned on the fold it is judged
on): precision, recall, F1, accuracy; the same for the single-threshold baseline; the few-shot
figure (30 good + 30 bad examples drawn at random, judged on the rest of the dev split); and the
decision time per message (one message at a time, as in the daemon), p50 / p95.

    nice .venv/bin/python bench/rejection_bench.py [--work /work/bench-cache/openmmlab]

HuixiangDou reports F1 75.88 (bce-embedding-base_v1, GPU) on the full labelled set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from knowledge.rejection.examples import Examples
from knowledge.rejection.features import FeatureSpace, TitleIndex, e5_query_embedder, kb_headings
from knowledge.rejection.files import TITLES_FILE, gate_dir
from knowledge.rejection.model import fit_gate
from knowledge.rejection.store import StoredGate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "bench"
CORPUS = SHARED / "kb-openmmlab"
DEV = SHARED / "rejection-dev"


def open_kb(work: Path, corpus: Path) -> object:
    """The OpenMMLab index through the knowledge API, built once into ``work``."""
    from knowledge.knowledge_base import KnowledgeBase
    from knowledge.settings import KnowledgeSettings

    settings = KnowledgeSettings.model_validate({"sources": [{"path": str(corpus)}]})
    kb = KnowledgeBase.open(settings, work)
    kb.warm_up()
    started = time.perf_counter()
    report = kb.build(progress=True)
    summary = report.summary()[0]  # type: ignore[attr-defined]
    print(f"index: {summary} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return kb


def scores_of(labels: np.ndarray, accepted: np.ndarray) -> dict[str, float]:
    tp = float(((labels == 1) & accepted).sum())
    fp = float(((labels == 0) & accepted).sum())
    fn = float(((labels == 1) & ~accepted).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": float((accepted == (labels == 1)).mean()),
    }


def nested_cv(
    base: np.ndarray,
    emb: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    *,
    min_examples: int = 20,
    model: str = "logistic",
    repeats: int = 3,
) -> dict[str, float]:
    from sklearn.model_selection import StratifiedKFold

    runs = []
    for seed in range(repeats):
        accepted = np.zeros(len(labels), dtype=bool)
        for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(base, labels):
            gate = fit_gate(
                base[train],
                emb[train],
                labels[train],
                names,
                min_examples=min_examples,
                kind=model,  # type: ignore[arg-type]
            )
            scores, _ = gate.scores(base[test], emb[test], names)
            accepted[test] = scores >= gate.threshold
        runs.append(scores_of(labels, accepted))
    out = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    out["f1_std"] = float(np.std([r["f1"] for r in runs]))
    return out


def few_shot(
    base: np.ndarray,
    emb: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    *,
    chitchat_share: float | None,
    per_class: int = 30,
    repeats: int = 20,
) -> dict[str, float]:
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(repeats):
        good = rng.choice(np.flatnonzero(labels == 1), per_class, replace=False)
        bad = rng.choice(np.flatnonzero(labels == 0), per_class, replace=False)
        train = np.r_[good, bad]
        test = np.setdiff1d(np.arange(len(labels)), train)
        gate = fit_gate(
            base[train], emb[train], labels[train], names, chitchat_share=chitchat_share
        )
        scores, _ = gate.scores(base[test], emb[test], names)
        runs.append(scores_of(labels[test], scores >= gate.threshold))
    out = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    out["f1_std"] = float(np.std([r["f1"] for r in runs]))
    return out


def read(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["query"] for line in lines if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/work/bench-cache/openmmlab"))
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--repeats", type=int, default=3, help="CV repetitions (seeds)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    kb = open_kb(args.work, args.corpus)
    examples = Examples.from_lists(read(args.dev / "good.jsonl"), read(args.dev / "bad.jsonl"))
    labels = examples.labels
    space = FeatureSpace(kb, e5_query_embedder())  # type: ignore[arg-type]
    started = time.perf_counter()
    titles_cache = gate_dir(args.work) / TITLES_FILE
    headings = kb_headings(kb)  # type: ignore[arg-type]
    space.titles = TitleIndex.build(headings, space.embedder, titles_cache)
    titles_seconds = time.perf_counter() - started
    started = time.perf_counter()
    emb = space.embed(examples.queries)
    base = space.base(examples.queries, None, emb)
    batch_seconds = time.perf_counter() - started
    names = space.names

    figures: dict[str, object] = {
        "examples": {"good": examples.good, "bad": examples.bad},
        "batch_features_seconds": batch_seconds,
        "headings": len(space.titles.texts),
        "headings_seconds": titles_seconds,
    }
    figures["gate_cv"] = nested_cv(base, emb, labels, names, repeats=args.repeats)
    figures["threshold_baseline_cv"] = nested_cv(
        base, emb, labels, names, min_examples=10**6, repeats=args.repeats
    )
    figures["few_shot_30_30"] = few_shot(base, emb, labels, names, chitchat_share=None)
    dev_share = round(examples.bad / len(labels), 2)
    figures["few_shot_30_30_with_share"] = few_shot(
        base, emb, labels, names, chitchat_share=dev_share
    )
    figures["few_shot_chitchat_share"] = dev_share

    # Decision time: one message at a time, as the daemon sees them.
    fitted = fit_gate(base, emb, labels, names)
    gate = StoredGate(fitted, {})
    timings = []
    for query in examples.queries[::3]:
        t = time.perf_counter()
        gate.decide(space, [query])
        timings.append((time.perf_counter() - t) * 1000)
    figures["decision_ms"] = {
        "p50": float(np.percentile(timings, 50)),
        "p95": float(np.percentile(timings, 95)),
        "n": len(timings),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))

    def row(name: str, r: dict[str, float]) -> str:
        return (
            f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} "
            f"(± {r['f1_std']:.3f}) | {r['accuracy']:.3f} |"
        )

    print("\n| gate (dev split, 5-fold CV) | precision | recall | F1 | accuracy |")
    print("| --- | --- | --- | --- | --- |")
    print(row("learned gate, all 568 examples", figures["gate_cv"]))  # type: ignore[arg-type]
    print(row("single threshold on KB similarity", figures["threshold_baseline_cv"]))  # type: ignore[arg-type]
    print(row("learned gate, 30 good + 30 bad", figures["few_shot_30_30"]))  # type: ignore[arg-type]
    print(row(f"  … told chitchat share {dev_share}", figures["few_shot_30_30_with_share"]))  # type: ignore[arg-type]
    d = figures["decision_ms"]
    print(f"\ndecision time per message: p50 {d['p50']:.1f} ms, p95 {d['p95']:.1f} ms")  # type: ignore[index]


if __name__ == "__main__":
    main()
