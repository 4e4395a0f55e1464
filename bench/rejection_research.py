"""Research only: which features and which model make the best gate, by nested 5-fold CV.

Uses the prototype cache of bench/rejection_research_cache.py. Prints one line per variant:
nested-CV F1 (threshold chosen inside each training fold), precision, recall, AUC.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from knowledge.rejection.message_features import TEXT_FEATURES, text_features

KINDS = ("lr",)
CACHE = Path("/work/bench-cache/rejection-proto")
DEV = Path("/work/shared/bench/rejection-dev")


def load() -> tuple[list[str], np.ndarray]:
    good = [json.loads(x)["query"] for x in (DEV / "good.jsonl").read_text().splitlines() if x]
    bad = [json.loads(x)["query"] for x in (DEV / "bad.jsonl").read_text().splitlines() if x]
    return good + bad, np.array([1] * len(good) + [0] * len(bad))


def bm25_scores(queries: list[str]) -> np.ndarray:
    path = CACHE / "queries_bm25.npy"
    if path.exists():
        return np.load(path)
    import bm25s
    import jieba

    def tok(text: str) -> list[str]:
        return [t.lower() for t in jieba.lcut_for_search(text) if re.search(r"\w", t)]

    chunks = json.loads((CACHE / "chunks.json").read_text())
    retriever = bm25s.BM25()
    vocab: dict[str, int] = {}
    corpus_ids = [[vocab.setdefault(t, len(vocab)) for t in tok(c)] for c in chunks]
    retriever.index(bm25s.tokenization.Tokenized(ids=corpus_ids, vocab=vocab), show_progress=False)
    out = []
    for q in queries:
        ids = [vocab[t] for t in tok(q) if t in vocab]
        scores = retriever.get_scores(ids) if ids else np.zeros(len(chunks))
        s = np.sort(scores)[::-1]
        out.append([s[0], s[:5].mean()])
    arr = np.array(out, dtype=np.float32)
    np.save(path, arr)
    (CACHE / "vocab.json").write_text(json.dumps(sorted(vocab)))
    return arr


def topk(sim: np.ndarray, k: int) -> np.ndarray:
    k = min(k, sim.shape[1])
    return np.sort(sim, axis=1)[:, -k:].mean(axis=1)


def knn_features(emb: np.ndarray, y: np.ndarray, rows: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Similarity of `rows` to the good and bad examples among `ref` (excluding self)."""
    sim = emb[rows] @ emb[ref].T
    same = rows[:, None] == ref[None, :]
    sim = np.where(same, -1.0, sim)
    g, b = sim[:, y[ref] == 1], sim[:, y[ref] == 0]
    feats = [topk(g, 1), topk(g, 3), topk(b, 1), topk(b, 3)]
    feats.append(feats[1] - feats[3])
    return np.column_stack(feats)


def make_model(kind: str):
    if kind == "lr":
        base = make_pipeline(
            StandardScaler(),
            LogisticRegression(
                C=float(__import__("os").environ.get("GATE_C", "0.5")), max_iter=2000
            ),
        )
    elif kind == "hgb":
        base = HistGradientBoostingClassifier(
            max_depth=3,
            learning_rate=0.05,
            max_iter=200,
            min_samples_leaf=15,
            l2_regularization=1.0,
        )
    return CalibratedClassifierCV(base, method="sigmoid", cv=5)


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    cands = np.unique(np.round(p, 4))
    f1s = [f1_score(y, p >= t) for t in cands]
    return float(cands[int(np.argmax(f1s))])


def evaluate(
    static: np.ndarray,
    use_knn: np.ndarray | None,
    y: np.ndarray,
    kind: str,
    seeds: int = 2,
    stack: np.ndarray | None = None,
) -> dict[str, float]:
    res = []
    for seed in range(seeds):
        pred = np.zeros(len(y), dtype=bool)
        prob = np.zeros(len(y))
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(static, y):

            def feats(rows, tr=tr):
                parts = [static[rows]]
                if use_knn is not None:
                    parts.append(knn_features(use_knn, y, rows, tr))
                if stack is not None:
                    parts.append(stack_scores(stack, y, rows, tr))
                return np.hstack(parts)

            xtr, xte = feats(tr), feats(te)
            inner = cross_val_predict(make_model(kind), xtr, y[tr], cv=5, method="predict_proba")[
                :, 1
            ]
            t = best_threshold(y[tr], inner)
            model = make_model(kind).fit(xtr, y[tr])
            prob[te] = model.predict_proba(xte)[:, 1]
            pred[te] = prob[te] >= t
        res.append(
            (
                f1_score(y, pred),
                precision_score(y, pred),
                recall_score(y, pred),
                roc_auc_score(y, prob),
            )
        )
    r = np.mean(res, axis=0)
    return {"f1": r[0], "p": r[1], "r": r[2], "auc": r[3]}


def stack_scores(emb: np.ndarray, y: np.ndarray, rows: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Out-of-fold logistic regression on the raw embedding: rows in ref get OOF scores."""
    in_ref = np.isin(rows, ref)
    out = np.zeros(len(rows))
    lr = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    if in_ref.any():
        oof = cross_val_predict(lr, emb[ref], y[ref], cv=5, method="decision_function")
        pos = {r: i for i, r in enumerate(ref)}
        out[in_ref] = [oof[pos[r]] for r in rows[in_ref]]
    if (~in_ref).any():
        out[~in_ref] = lr.fit(emb[ref], y[ref]).decision_function(emb[rows[~in_ref]])
    return out[:, None]


def main() -> None:
    queries, y = load()
    q_use = np.load(CACHE / "queries_use.npy")
    q_e5 = np.load(CACHE / "queries_e5.npy")
    chunks = np.load(CACHE / "chunks_use.npy")
    heads = np.load(CACHE / "heads_use.npy")
    sim = q_use @ chunks.T
    dense = np.column_stack([sim.max(1), topk(sim, 5)])
    hsim = q_use @ heads.T
    head = np.column_stack([hsim.max(1), topk(hsim, 5)])
    bm = bm25_scores(queries)
    bm = np.column_stack([np.log1p(bm[:, 0]), np.log1p(bm[:, 1])])
    vocab = set(json.loads((CACHE / "vocab.json").read_text()))
    text = np.array(
        [[text_features(q)[n] for n in TEXT_FEATURES if n != "mentioned"] for q in queries]
    )
    kbvocab = np.array(
        [
            [sum(1 for t in re.findall(r"[a-z][a-z0-9_]{2,}", q.lower()) if t in vocab)]
            for q in queries
        ],
        dtype=float,
    )
    which = sys.argv[1:] or ["all"]
    variants = {
        "kb": (np.hstack([dense, bm]), None, None),
        "kb+knn_e5": (np.hstack([dense, bm]), q_e5, None),
        "kb+knn_use": (np.hstack([dense, bm]), q_use, None),
        "kb+knn_e5+text": (np.hstack([dense, bm, text]), q_e5, None),
        "kb+head+knn_e5+text": (np.hstack([dense, bm, head, text]), q_e5, None),
        "kb+head+knn_e5+text+vocab": (np.hstack([dense, bm, head, text, kbvocab]), q_e5, None),
        "kb+knn_e5+text+stack": (np.hstack([dense, bm, text]), q_e5, q_e5),
        "kb+head+knn_e5+text+vocab+stack": (
            np.hstack([dense, bm, head, text, kbvocab]),
            q_e5,
            q_e5,
        ),
    }
    for name, (static, knn, stack) in variants.items():
        if "all" not in which and name not in which:
            continue
        for kind in KINDS:
            r = evaluate(static, knn, y, kind, stack=stack)
            print(
                f"{name:36s} {kind:4s} F1 {r['f1']:.3f} P {r['p']:.3f} R {r['r']:.3f} "
                f"AUC {r['auc']:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
