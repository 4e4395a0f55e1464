"""Directions tried on the learned ranker after its second phase (issue 15, third pass).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 nice .venv/bin/python bench/ranker_directions.py \
        [--work /work/bench-cache/openmmlab] [--seeds 5]

Each direction adds features to the shipped ones (or changes the model) and is judged by 5-fold
cross-validation on the dev split, repeated with ``--seeds`` shuffles (mean hit@1, and the
questions it wins and loses against the shipped features, per shuffle); the held-out split is
scored by the model fitted on dev. Directions:

- ``faq``: the document is an FAQ or troubleshooting page (its path says so), alone and crossed
  with "the question reports a problem" (an error, 报错, nan, 跑不 ...);
- ``relative``: every feature minus its best value among the question's candidates (a linear
  model over absolute features cannot say "best of this question");
- ``document BM25``: BM25 over whole documents (their chunks' terms joined), plain and with the
  question's translated terms;
- ``name coverage``: the share of the file name's words (the folder's, for a README) that the
  question or its translation holds;
- models: gradient boosting on the shipped features, and a pairwise logistic regression
  (answering minus non-answering documents of a question).

None of them was adopted then (``bench/ACCURACY_NOTES.md``, section 11). In the fourth round the
FAQ page crossed with "the question reports a problem" became a shipped feature
(``faq_for_problem``, section 12): with it shipped, the ``faq`` rows here measure it twice.
Both use the shipped definitions (``is_faq_page``, ``reports_problem`` in
``knowledge/ranking.py``); section 11's figures came from a first, narrower problem pattern.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

sys.path.insert(0, str(Path(__file__).parent))
import accuracy

from knowledge.bm25 import BM25Index
from knowledge.ranking import is_faq_page, reports_problem

Scorer = Callable[[np.ndarray], np.ndarray]
Fit = Callable[[np.ndarray, np.ndarray, np.ndarray], Scorer]

GENERIC_NAME = {"readm", "readme", "index", "zh", "cn", "en", "md", "txt", "doc", "docs"}


def logistic(X: np.ndarray, y: np.ndarray, owner: np.ndarray) -> Scorer:
    """The shipped model (``accuracy.fit_logistic``: standardised features, C 0.1)."""
    return accuracy.fit_logistic(X, y).score


def boosting(X: np.ndarray, y: np.ndarray, owner: np.ndarray) -> Scorer:
    model = HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.05, max_leaf_nodes=8, l2_regularization=1.0, random_state=0
    ).fit(X, y)
    return lambda Z: model.predict_proba(Z)[:, 1]


def pairwise(X: np.ndarray, y: np.ndarray, owner: np.ndarray) -> Scorer:
    """Logistic regression on differences: an answering document minus a non-answering one of
    the same question, both ways round."""
    mean, scale = X.mean(0), X.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    Z = (X - mean) / scale
    pairs = []
    for q in np.unique(owner):
        rows = np.flatnonzero(owner == q)
        good, bad = rows[y[rows] == 1], rows[y[rows] == 0]
        pairs += [Z[g] - Z[bad] for g in good]
    D = np.vstack(pairs)
    model = LogisticRegression(C=0.1, max_iter=5000, fit_intercept=False).fit(
        np.vstack([D, -D]), np.r_[np.ones(len(D)), np.zeros(len(D))]
    )
    return lambda Q: ((Q - mean) / scale) @ model.coef_[0]


class Study:
    def __init__(self, data: accuracy.RankerData) -> None:
        self.data = data
        self.n = len(data.questions)
        self.rows = [np.flatnonzero(data.owner == i) for i in range(self.n)]
        self.split = np.array([q["split"] for q in data.questions])

    def per_row(self, value: Callable[[int, str], float]) -> np.ndarray:
        """A column: ``value(question, document)`` for every candidate row."""
        out = np.zeros(len(self.data.y))
        for i, rows in enumerate(self.rows):
            for k, row in enumerate(rows):
                out[row] = value(i, self.data.docs[i][k])
        return out

    def per_question(self, transform: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        out = np.zeros_like(self.data.X)
        for rows in self.rows:
            out[rows] = transform(self.data.X[rows])
        return out

    def first_hits(self, scores: np.ndarray) -> np.ndarray:
        hit = np.zeros(self.n, dtype=bool)
        for i, rows in enumerate(self.rows):
            best = rows[np.argmax(scores[rows])] if len(rows) else None
            hit[i] = best is not None and bool(self.data.y[best])
        return hit

    def cross_validated(self, X: np.ndarray, fit: Fit, seed: int) -> np.ndarray:
        dev = np.flatnonzero(self.split == "dev")
        y, owner = self.data.y, self.data.owner
        scores = np.zeros(len(y))
        for train, test in KFold(5, shuffle=True, random_state=seed).split(dev):
            fitted = np.isin(owner, dev[train])
            scored = np.isin(owner, dev[test])
            scores[scored] = fit(X[fitted], y[fitted], owner[fitted])(X[scored])
        return self.first_hits(scores)[dev]

    def held_out(self, X: np.ndarray, fit: Fit) -> float:
        y, owner = self.data.y, self.data.owner
        fitted = np.isin(owner, np.flatnonzero(self.split == "dev"))
        hits = self.first_hits(fit(X[fitted], y[fitted], owner[fitted])(X))
        return float(hits[self.split == "heldout"].mean())


def document_bm25(kb: accuracy.KnowledgeBase, study: Study, prefix: str) -> np.ndarray:
    """BM25 of the question (plain, then with its translated terms added) over whole
    documents, over the best document's: two columns."""
    _, tokens, _ = kb.manifest.all_tokens()
    owners, _ = kb.manifest.all_chunk_documents()
    joined: dict[str, list[str]] = defaultdict(list)
    for owner, terms in zip(owners, tokens, strict=True):
        joined[owner].extend(terms)
    documents = kb.document_index
    assert documents is not None
    source = dict(zip(documents.keys, documents.sources, strict=True))
    names = [source[key].removeprefix(prefix) for key in joined]
    index = BM25Index()
    index.build(names, list(joined.values()), ["default"] * len(names))
    position = {name: i for i, name in enumerate(names)}
    columns = np.zeros((len(study.data.y), 2))
    for i, q in enumerate(study.data.questions):
        asked = kb.tokenizer(q["question"])
        plain = index.scores(asked)
        expanded = plain + index.scores(documents.dictionary.translate(asked))
        for k, row in enumerate(study.rows[i]):
            at = position[study.data.docs[i][k]]
            columns[row] = (
                plain[at] / max(plain.max(), 1e-9),
                expanded[at] / max(expanded.max(), 1e-9),
            )
    return columns


def name_coverage(kb: accuracy.KnowledgeBase, study: Study) -> np.ndarray:
    documents = kb.document_index
    assert documents is not None
    asked = [
        set(t) | set(documents.dictionary.translate(t))
        for t in (kb.tokenizer(q["question"]) for q in study.data.questions)
    ]

    def words(path: str) -> set[str]:
        parts = path.split("/")
        for part in (parts[-1].rsplit(".", 1)[0], parts[-2] if len(parts) > 1 else ""):
            found = set(kb.tokenizer(part.replace("_", " ").replace("-", " "))) - GENERIC_NAME
            if found:
                return found
        return set()

    def value(i: int, path: str) -> float:
        name = words(path)
        return len(name & asked[i]) / len(name) if name else 0.0

    return study.per_row(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/work/bench-cache/openmmlab"))
    parser.add_argument("--corpus", type=Path, default=accuracy.DEFAULT_CORPUS)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()

    kb = accuracy.open_kb(args.work, args.corpus)
    data = accuracy.RankerData(kb, args.corpus, accuracy.load_questions())
    study = Study(data)
    X = data.X
    faq = study.per_row(lambda i, path: float(is_faq_page(path)))
    problem = study.per_row(lambda i, path: float(reports_problem(data.questions[i]["question"])))
    relative = study.per_question(lambda rows: rows - rows.max(axis=0))
    prefix = args.corpus.name + "/"
    whole = document_bm25(kb, study, prefix)
    directions: list[tuple[str, np.ndarray, Fit]] = [
        ("shipped features, logistic", X, logistic),
        ("+ faq page", np.column_stack([X, faq]), logistic),
        ("+ faq page, faq x problem", np.column_stack([X, faq, faq * problem]), logistic),
        ("+ relative to the best", np.hstack([X, relative]), logistic),
        (
            "+ document BM25 (plain, expanded)",
            np.hstack([X, whole]),
            logistic,
        ),
        ("+ name coverage", np.column_stack([X, name_coverage(kb, study)]), logistic),
        ("gradient boosting", X, boosting),
        ("pairwise logistic", X, pairwise),
    ]
    seeds = range(args.seeds)
    base = [study.cross_validated(X, logistic, seed) for seed in seeds]
    print(f"dev: {int((study.split == 'dev').sum())} questions, {args.seeds} shuffles of 5 folds")
    print(f"{'direction':<36} {'dev CV hit@1':>14} {'wins':>5} {'losses':>6} {'held-out':>9}")
    for name, features, fit in directions:
        runs = [study.cross_validated(features, fit, seed) for seed in seeds]
        rates = [run.mean() for run in runs]
        wins = np.mean([(r & ~b).sum() for r, b in zip(runs, base, strict=True)])
        losses = np.mean([(b & ~r).sum() for r, b in zip(runs, base, strict=True)])
        print(
            f"{name:<36} {np.mean(rates):.3f} ± {np.std(rates):.3f} {wins:5.1f} {losses:6.1f}"
            f" {study.held_out(features, fit):9.3f}"
        )


if __name__ == "__main__":
    main()
