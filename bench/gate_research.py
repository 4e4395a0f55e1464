"""Research: directions for the rejection gate, each judged by the same nested CV.

Every direction is scored like ``bench/rejection_bench.py``: stratified 5-fold CV on the dev
split, the threshold chosen inside each training fold, repeated with several seeds; the table
gives precision, recall and F1 as mean ± sd over the seeds, and the ranking's own quality on the
pooled out-of-fold scores (precision at recall >= 0.85, AUC). Directions:

- a text model (TF-IDF of character n-grams, or of jieba words, + logistic regression) on the
  message, as one stacked feature (out-of-fold inside each training fold), or averaged with
  the gate's probability;
- the logistic regression's C; the boosting gate averaged with the logistic one;
- the e5 "passage: " prefix instead of "query: " for the example and heading similarities.

The embeddings and base features are cached in ``--cache`` (a rerun takes a minute or two).

    nice .venv/bin/python bench/gate_research.py [--work /work/bench-cache/openmmlab]
        [--corpus ../shared/bench/kb-openmmlab] [--dev ../shared/bench/rejection-dev]
        [--seeds 0 1 2] [--only "gate C"]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import knowledge.rejection.model as gate_model
from bench.rejection_bench import CORPUS, DEV, open_kb, read, scores_of
from knowledge.bm25 import Tokenizer
from knowledge.rejection.examples import Examples
from knowledge.rejection.features import (
    FeatureSpace,
    QueryEmbedder,
    TitleIndex,
    e5_query_embedder,
    kb_headings,
)
from knowledge.rejection.model import best_threshold, fit_gate, probability_threshold

_TOKENIZER = Tokenizer()

# A method: (train rows, test rows, seed) -> (scores of the test rows, threshold).
Method = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, float]]


class PassageEmbedder(QueryEmbedder):
    """The same e5 model with the "passage: " prefix, for messages, examples and headings."""

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed(list(texts))


class Data:
    """The dev split's queries, labels, e5 embeddings and base features (both prefixes)."""

    def __init__(self, cache: Path, work: Path, corpus: Path, dev: Path) -> None:
        path = cache / "features.npz"
        if not path.exists():
            self._compute(path, work, corpus, dev)
        with np.load(path, allow_pickle=False) as data:
            self.queries = [str(q) for q in data["queries"]]
            self.labels = data["labels"].astype(int)
            self.emb = data["emb"]
            self.base = data["base"]
            self.emb_passage = data["emb_passage"]
            self.base_passage = data["base_passage"]
            self.names = [str(n) for n in data["names"]]

    @staticmethod
    def _compute(path: Path, work: Path, corpus: Path, dev: Path) -> None:
        kb = open_kb(work, corpus)
        examples = Examples.from_lists(read(dev / "good.jsonl"), read(dev / "bad.jsonl"))
        out: dict[str, Any] = {
            "queries": np.array(examples.queries, dtype=str),
            "labels": examples.labels,
        }
        headings = kb_headings(kb)  # type: ignore[arg-type]
        query_embedder = e5_query_embedder()
        passage_embedder = PassageEmbedder(
            query_embedder.embedder, query_embedder.name.replace(":query", ":passage")
        )
        for suffix, embedder in (("", query_embedder), ("_passage", passage_embedder)):
            started = time.perf_counter()
            space = FeatureSpace(kb, embedder)  # type: ignore[arg-type]
            space.titles = TitleIndex.build(
                headings, embedder, path.parent / f"titles{suffix}.npz"
            )
            emb = space.embed(examples.queries)
            out[f"emb{suffix}"] = emb
            out[f"base{suffix}"] = space.base(examples.queries, None, emb)
            out["names"] = np.array(space.names, dtype=str)
            print(f"features{suffix}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **out)


def nested_cv(labels: np.ndarray, method: Method, seeds: list[int]) -> dict[str, float]:
    """P/R/F1 of the decisions, and two measures of the ranking alone on the pooled
    out-of-fold scores: AUC and the best precision at recall >= 0.85 (the issue's target)."""
    runs = []
    for seed in seeds:
        accepted = np.zeros(len(labels), dtype=bool)
        pooled = np.zeros(len(labels))
        splitter = StratifiedKFold(5, shuffle=True, random_state=seed)
        for train, test in splitter.split(labels, labels):
            scores, threshold = method(train, test, seed)
            accepted[test] = scores >= threshold
            pooled[test] = scores
        run = scores_of(labels, accepted)
        precision, recall, _ = precision_recall_curve(labels, pooled)
        run["p_at_r85"] = float(precision[recall >= 0.85].max())
        run["auc"] = float(roc_auc_score(labels, pooled))
        runs.append(run)
    out = {}
    for key in ("precision", "recall", "f1", "p_at_r85", "auc"):
        values = [r[key] for r in runs]
        out[key], out[key + "_sd"] = float(np.mean(values)), float(np.std(values))
    return out


# --- text models ------------------------------------------------------------------------


def char_model(ngrams: tuple[int, int], c: float = 1.0) -> Callable[[], Pipeline]:
    def make() -> Pipeline:
        return make_pipeline(
            TfidfVectorizer(analyzer="char_wb", ngram_range=ngrams, sublinear_tf=True, min_df=2),
            LogisticRegression(C=c, max_iter=2000),
        )

    return make


def bm25_tokens(text: str) -> list[str]:
    """The knowledge base's BM25 terms (jieba words, stemmed English, stopwords dropped)."""
    return _TOKENIZER(text)


def jieba_tokens(text: str) -> list[str]:
    """jieba words (search mode) with the stopwords kept: 吗, 怎么, 请问 mark questions."""
    import jieba

    jieba.setLogLevel(60)
    return [w for w in jieba.lcut_for_search(text.lower()) if w.strip()]


def word_model(keep_stopwords: bool, c: float = 1.0) -> Callable[[], Pipeline]:
    analyzer = jieba_tokens if keep_stopwords else bm25_tokens

    def make() -> Pipeline:
        return make_pipeline(
            TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, min_df=2),
            LogisticRegression(C=c, max_iter=2000),
        )

    return make


def text_scores(
    make: Callable[[], Pipeline],
    queries: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The text model's probability: out-of-fold for the training rows, fitted on all of them
    for the test rows."""
    inner = StratifiedKFold(5, shuffle=True, random_state=seed)
    oof = cross_val_predict(
        make(), queries[train], labels[train], cv=inner, method="predict_proba"
    )[:, 1]
    model = make().fit(queries[train], labels[train])
    return oof, model.predict_proba(queries[test])[:, 1]


# --- methods ------------------------------------------------------------------------------


def gate_method(data: Data, kind: str = "logistic", passage: bool = False, **fit: Any) -> Method:
    base = data.base_passage if passage else data.base
    emb = data.emb_passage if passage else data.emb

    def method(train: np.ndarray, test: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        gate = fit_gate(base[train], emb[train], data.labels[train], data.names, kind=kind, **fit)  # type: ignore[arg-type]
        scores, _ = gate.scores(base[test], emb[test], data.names)
        return scores, gate.threshold

    return method


def stacked_method(data: Data, make: Callable[[], Pipeline]) -> Method:
    queries = np.array(data.queries, dtype=object)
    names = [*data.names, "text_model"]

    def method(train: np.ndarray, test: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        oof, held = text_scores(make, queries, data.labels, train, test, seed)
        base_train = np.column_stack([data.base[train], oof])
        base_test = np.column_stack([data.base[test], held])
        gate = fit_gate(base_train, data.emb[train], data.labels[train], names)
        scores, _ = gate.scores(base_test, data.emb[test], names)
        return scores, gate.threshold

    return method


def averaged_method(
    data: Data, make: Callable[[], Pipeline], weight: float = 0.5, cut: str = "best"
) -> Method:
    queries = np.array(data.queries, dtype=object)

    def method(train: np.ndarray, test: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        labels = data.labels[train]
        gate = fit_gate(data.base[train], data.emb[train], labels, data.names)
        oof, held = text_scores(make, queries, data.labels, train, test, seed)
        train_scores = (1 - weight) * gate.oof_scores + weight * oof
        scores, _ = gate.scores(data.base[test], data.emb[test], data.names)
        threshold = choose(labels, train_scores, cut)
        return (1 - weight) * scores + weight * held, threshold

    return method


def two_gates_method(data: Data, cut: str = "best") -> Method:
    def method(train: np.ndarray, test: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        labels = data.labels[train]
        args = (data.base[train], data.emb[train], labels, data.names)
        gates = [fit_gate(*args, kind="logistic"), fit_gate(*args, kind="boosting")]
        train_scores = np.mean([g.oof_scores for g in gates], axis=0)
        scores = np.mean(
            [g.scores(data.base[test], data.emb[test], data.names)[0] for g in gates], axis=0
        )
        return scores, choose(labels, train_scores, cut)

    return method


def choose(labels: np.ndarray, scores: np.ndarray, cut: str) -> float:
    weights = np.ones(len(labels))
    if cut == "half":
        return probability_threshold(labels, scores, weights).threshold
    return best_threshold(labels, scores, weights).threshold


def with_c(c: float, method: Method) -> Method:
    """Run ``method`` with the gate's logistic regression at another C."""

    def classifier(kind: Any, n_examples: int) -> Any:
        model = original(kind, n_examples)
        if kind == "logistic":
            model.estimator.set_params(logisticregression__C=c)
        return model

    original = gate_model.make_classifier

    def run(train: np.ndarray, test: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        gate_model.make_classifier = classifier  # type: ignore[assignment]
        try:
            return method(train, test, seed)
        finally:
            gate_model.make_classifier = original

    return run


def text_alone(data: Data, make: Callable[[], Pipeline]) -> Method:
    queries = np.array(data.queries, dtype=object)

    def method(train: np.ndarray, test: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        oof, held = text_scores(make, queries, data.labels, train, test, seed)
        return held, choose(data.labels[train], oof, "half")

    return method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/work/bench-cache/openmmlab"))
    parser.add_argument("--cache", type=Path, default=Path("/work/bench-cache/gate-research"))
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", help="run only the directions whose name contains this")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    data = Data(args.cache, args.work, args.corpus, args.dev)
    directions: dict[str, Method] = {
        "shipped gate": gate_method(data),
        "text alone: char_wb 1-3": text_alone(data, char_model((1, 3))),
        "text alone: char_wb 2-4": text_alone(data, char_model((2, 4))),
        "text alone: jieba words (BM25 tokenizer)": text_alone(data, word_model(False)),
        "text alone: jieba words, stopwords kept": text_alone(data, word_model(True)),
        "+ stacked char_wb 1-3": stacked_method(data, char_model((1, 3))),
        "+ stacked char_wb 2-4": stacked_method(data, char_model((2, 4))),
        "+ stacked char_wb 1-3, C 0.3": stacked_method(data, char_model((1, 3), 0.3)),
        "+ stacked char_wb 1-3, C 3": stacked_method(data, char_model((1, 3), 3.0)),
        "+ stacked jieba words (BM25 tokenizer)": stacked_method(data, word_model(False)),
        "+ stacked jieba words, stopwords kept": stacked_method(data, word_model(True)),
        "+ stacked char_wb 1-3, gate C 0.03": with_c(
            0.03, stacked_method(data, char_model((1, 3)))
        ),
        "averaged with char_wb 1-3": averaged_method(data, char_model((1, 3))),
        "averaged with char_wb 2-4": averaged_method(data, char_model((2, 4))),
        "averaged with char_wb 1-3, weight 0.3": averaged_method(data, char_model((1, 3)), 0.3),
        "averaged with jieba words, stopwords kept": averaged_method(data, word_model(True)),
        "gate C 0.03": with_c(0.03, gate_method(data)),
        "gate C 0.01": with_c(0.01, gate_method(data)),
        "gate C 0.3": with_c(0.3, gate_method(data)),
        "gate C 1": with_c(1.0, gate_method(data)),
        "boosting gate": gate_method(data, kind="boosting"),
        "logistic and boosting averaged": two_gates_method(data),
        "e5 passage prefix": gate_method(data, passage=True),
        "neighbours 5": gate_method(data, neighbours=5),
    }
    figures = {}
    print("| direction | precision | recall | F1 | P at R ≥ 0.85 | AUC |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, method in directions.items():
        if args.only and args.only not in name:
            continue
        started = time.perf_counter()
        r = nested_cv(data.labels, method, args.seeds)
        figures[name] = r
        print(
            f"| {name} | {r['precision']:.3f} ± {r['precision_sd']:.3f} | "
            f"{r['recall']:.3f} ± {r['recall_sd']:.3f} | {r['f1']:.3f} ± {r['f1_sd']:.3f} | "
            f"{r['p_at_r85']:.3f} | {r['auc']:.3f} |"
            f"  ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
