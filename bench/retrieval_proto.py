"""Research prototype (not the knowledge package): a second retrieval stage over ``kb.search``'s
candidates that ranks *documents* with a linear model over cheap features.

Measured by ``bench/accuracy_research.py``; the findings are in ``bench/ACCURACY_NOTES.md``.
Pieces, each one a direction of issue 15:

- ``BilingualDictionary``: a term dictionary mined from the parallel ``docs/en`` / ``docs/zh_cn``
  pages of the corpus (their headings, aligned one to one when both pages have the same heading
  outline); a question's terms are translated and scored by BM25 as a second query.
- ``FieldIndex``: one BM25 "document" per file holding its path words and every heading in it.
- ``DocumentInfo``: what is known of a file without the question: its top folder (repository),
  language (share of Chinese characters), kind (docs folder, README, plain text) and size.
- ``Prototype.candidates``: the union of the dense top ``n``, the BM25 top ``n`` and the expanded
  BM25 top ``n`` chunks, grouped by document, one feature row per document.
- ``LinearRanker``: standardisation + logistic-regression weights, fitted by the research script
  on the development questions; documents are ranked by its score.
"""

from __future__ import annotations

import collections
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$", re.M)
_FENCE = re.compile(r"```.*?```", re.S)
_LATIN_WORD = re.compile(r"[a-z][a-z0-9_\-]{2,}")

# English / Chinese file-name pairs of translated pages, besides docs/en <-> docs/zh_cn.
_TWIN_SUFFIXES = (
    ("README.md", "README_zh-CN.md"),
    ("README.md", "README_CN.md"),
    ("README.md", "README_zh.md"),
    ("readme.md", "readme_zh-CN.md"),
    (".md", "_zh-CN.md"),
    ("_en.md", "_zh.md"),
)


# -- bilingual dictionary --


def twin_pages(root: Path) -> list[tuple[str, str]]:
    """(English page, Chinese page) pairs of translated Markdown files under ``root``."""
    files = {str(p.relative_to(root)) for p in root.rglob("*.md")}
    pairs = set()
    for name in files:
        if "/docs/en/" in name:
            other = name.replace("/docs/en/", "/docs/zh_cn/")
            if other in files:
                pairs.add((name, other))
        for en, zh in _TWIN_SUFFIXES:
            if name.endswith(en):
                other = name[: -len(en)] + zh
                if other in files and other != name:
                    pairs.add((name, other))
    return sorted(pairs)


def _headings(path: Path) -> list[tuple[int, str]]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8", errors="replace"))
    return [(len(m.group(1)), m.group(2).strip()) for m in _HEADING.finditer(text)]


def aligned_headings(root: Path) -> list[tuple[str, str]]:
    """Heading pairs of twin pages whose outlines (count and levels) match exactly."""
    out = []
    for en, zh in twin_pages(root):
        he, hz = _headings(root / en), _headings(root / zh)
        if [lv for lv, _ in he] == [lv for lv, _ in hz]:
            out += [(a, b) for (_, a), (_, b) in zip(he, hz, strict=True)]
    return out


@dataclass
class BilingualDictionary:
    """Chinese term -> English terms and back, as BM25 terms (jieba words, stemmed English)."""

    zh2en: dict[str, list[str]] = field(default_factory=dict)
    en2zh: dict[str, list[str]] = field(default_factory=dict)
    pairs: int = 0

    @classmethod
    def mine(
        cls,
        pairs: Iterable[tuple[str, str]],
        tokenize: Any,
        min_count: int = 2,
        min_dice: float = 0.3,
        keep: int = 3,
    ) -> BilingualDictionary:
        """Dice association of the terms of aligned (English, Chinese) texts."""
        count_en: collections.Counter[str] = collections.Counter()
        count_zh: collections.Counter[str] = collections.Counter()
        count_both: collections.Counter[tuple[str, str]] = collections.Counter()
        used = 0
        for en, zh in pairs:
            if not CJK.search(zh) or CJK.search(en):
                continue
            terms_en = {t for t in tokenize(en) if len(t) > 1 and not t.isdigit()}
            terms_zh = {t for t in tokenize(zh) if CJK.search(t)}
            terms_en = {t for t in terms_en if not CJK.search(t)}
            if not terms_en or not terms_zh:
                continue
            used += 1
            count_en.update(terms_en)
            count_zh.update(terms_zh)
            count_both.update((e, z) for e in terms_en for z in terms_zh)
        zh2en: dict[str, list[tuple[float, str]]] = collections.defaultdict(list)
        en2zh: dict[str, list[tuple[float, str]]] = collections.defaultdict(list)
        for (e, z), c in count_both.items():
            if c < min_count:
                continue
            dice = 2 * c / (count_en[e] + count_zh[z])
            if dice >= min_dice:
                zh2en[z].append((dice, e))
                en2zh[e].append((dice, z))
        return cls(
            {z: [e for _, e in sorted(v, reverse=True)[:keep]] for z, v in zh2en.items()},
            {e: [z for _, z in sorted(v, reverse=True)[:keep]] for e, v in en2zh.items()},
            used,
        )

    def translate(self, tokens: Sequence[str], top: int = 1) -> list[str]:
        """The other language's terms for ``tokens`` (those already in the query left out)."""
        out: list[str] = []
        present = set(tokens)
        for token in tokens:
            table = self.zh2en if CJK.search(token) else self.en2zh
            out += [t for t in table.get(token, [])[:top] if t not in present]
        return out


# -- per-document facts --


def _twin_names(path: str) -> list[str]:
    """Names the translation of ``path`` may have."""
    out = []
    if "/docs/en/" in path:
        out.append(path.replace("/docs/en/", "/docs/zh_cn/"))
    if "/docs/zh_cn/" in path:
        out.append(path.replace("/docs/zh_cn/", "/docs/en/"))
    for en, zh in _TWIN_SUFFIXES:
        if path.endswith(zh):
            out.append(path[: -len(zh)] + en)
        elif path.endswith(en):
            out.append(path[: -len(en)] + zh)
    return out


def _doc_kind(path: str) -> int:
    """0 docs folder, 1 README at the repository top, 2 other README, 3 .txt, 4 other."""
    base = path.rsplit("/", 1)[-1].lower()
    if base.startswith("readme"):
        return 1 if path.count("/") == 1 else 2
    if "/docs/" in path:
        return 0
    if base.endswith(".txt"):
        return 3
    return 4


@dataclass
class DocumentInfo:
    """Per document (source path relative to the corpus root): repository, language, kind."""

    docs: list[str]
    repo: list[str]
    zh: np.ndarray
    kind: np.ndarray
    chunks: np.ndarray
    twin: np.ndarray  # index of the translated page, -1 if none

    @classmethod
    def build(cls, sources: Sequence[str], texts: Sequence[str]) -> DocumentInfo:
        cjk: collections.Counter[str] = collections.Counter()
        size: collections.Counter[str] = collections.Counter()
        chunks: collections.Counter[str] = collections.Counter()
        for source, text in zip(sources, texts, strict=True):
            cjk[source] += len(CJK.findall(text))
            size[source] += len(text)
            chunks[source] += 1
        docs = sorted(chunks)
        index = {d: i for i, d in enumerate(docs)}
        twin = np.full(len(docs), -1)
        for i, d in enumerate(docs):
            for other in _twin_names(d):
                if other in index:
                    twin[i] = index[other]
                    break
        return cls(
            docs=docs,
            repo=[d.split("/", 1)[0] for d in docs],
            zh=np.array([cjk[d] / max(size[d], 1) > 0.05 for d in docs], dtype=float),
            kind=np.array([_doc_kind(d) for d in docs]),
            chunks=np.array([chunks[d] for d in docs], dtype=float),
            twin=twin,
        )

    def repos_named(self, query: str) -> set[str]:
        """Repositories the question names: a word equal to a top folder name, or a prefix of
        at least 4 letters of exactly one (``mmdet`` -> ``mmdetection``)."""
        names = sorted(set(self.repo))
        found = set()
        for word in _LATIN_WORD.findall(query.lower()):
            exact = [n for n in names if n.lower() == word]
            prefix = [n for n in names if len(word) >= 4 and n.lower().startswith(word)]
            if exact:
                found.add(exact[0])
            elif len(prefix) == 1:
                found.add(prefix[0])
        return found


class FieldIndex:
    """BM25 over one text per document: its path words and all its headings."""

    def __init__(self, docs: Sequence[str], titles_per_doc: dict[str, set[str]], tokenize: Any):
        from knowledge.bm25 import BM25Index

        self.index = BM25Index()
        texts = [
            re.sub(r"[/_\-.]", " ", d) + "\n" + "\n".join(sorted(titles_per_doc.get(d, ())))
            for d in docs
        ]
        self.index.build(list(docs), [tokenize(t) for t in texts], ["default"] * len(docs))

    def scores(self, tokens: list[str]) -> np.ndarray:
        return self.index.scores(tokens)


# -- the prototype --

FEATURES: tuple[str, ...] = (
    "dense_max",  # best USE cosine among the document's candidate chunks
    "dense_2nd",  # second best (0 with one chunk)
    "bm_max",  # best BM25 of the question, over the question's best BM25 anywhere
    "bm_2nd",
    "bmx_max",  # the same with the translated terms added (BM25 q + alpha * BM25 translated)
    "fused_max",  # today's fusion (0.4 dense + 0.6 BM25, min-max over the candidates)
    "fusedx_max",  # the same fusion with the expanded BM25
    "n_pool",  # log(1 + candidate chunks from this document)
    "dense_rank",  # 1 / (1 + best rank of its chunks by dense)
    "bm_rank",  # 1 / (1 + best rank of its chunks by expanded BM25)
    "field_bm",  # path + headings BM25 of the question, over its best document
    "field_bmx",  # the same with the translated terms
    "repo_match",  # the question names this document's repository
    "repo_other",  # the question names a repository, not this one
    "same_lang",  # document language == question language
    "kind_docs",
    "kind_readme",
    "kind_subreadme",
    "kind_txt",
    "log_chunks",  # log(1 + chunks in the document)
    "title_bm",  # best BM25 of the question over its candidate chunks' heading paths
    "coverage",  # IDF share of the question's terms found in the document's candidate chunks
    "coverage_x",  # the same, a term or one of its translations counting
    "twin_fusedx",  # fusedx_max of the translated page, when it is a candidate too
)


@dataclass
class Candidates:
    docs: list[str]
    features: np.ndarray  # (documents, len(FEATURES))
    best_chunk: list[str]  # chunk id of each document's best fused chunk
    timings: dict[str, float] = field(default_factory=dict)


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


class Prototype:
    """Candidate documents and their features for a question, from a built ``KnowledgeBase``.

    ``prefix`` is stripped from chunk sources (``kb-openmmlab/``) so documents are named like the
    question set's answers."""

    def __init__(
        self,
        kb: Any,
        dictionary: BilingualDictionary,
        prefix: str = "",
        n: int = 50,
        alpha: float = 1.0,
        dense_weight: float = 0.4,
        exact_dense: bool = False,
    ) -> None:
        self.kb = kb
        self.dictionary = dictionary
        self.prefix = prefix
        self.n = n
        self.alpha = alpha
        self.dense_weight = dense_weight
        bm25 = kb.bm25
        self.bm25 = bm25
        self.ids: list[str] = list(bm25.ids)
        rows = kb.manifest.chunks(self.ids)
        sources = [self._doc(rows[i].source) for i in self.ids]
        self.info = DocumentInfo.build(sources, [rows[i].text for i in self.ids])
        doc_index = {d: i for i, d in enumerate(self.info.docs)}
        self.chunk_doc = np.array([doc_index[s] for s in sources])
        titles: dict[str, set[str]] = collections.defaultdict(set)
        for chunk_id, source in zip(self.ids, sources, strict=True):
            titles[source].update(rows[chunk_id].title.split(" > "))
        self.fields = FieldIndex(self.info.docs, titles, kb.tokenizer)
        self.position = {c: i for i, c in enumerate(self.ids)}
        # Exact dense search over all chunk vectors in memory (deterministic), instead of
        # chroma's approximate HNSW top n plus a fetch of the vectors it did not return.
        self.vectors: np.ndarray | None = None
        if exact_dense:
            found = kb.store.embeddings(self.ids)
            self.vectors = np.stack([found[i] for i in self.ids]).astype(np.float32)
        from knowledge.bm25 import BM25Index

        self.titles = BM25Index()
        self.titles.build(
            self.ids,
            [kb.tokenizer(rows[i].title) for i in self.ids],
            ["default"] * len(self.ids),
        )
        self.terms = [frozenset(rows[i].tokens.split()) for i in self.ids]
        df: collections.Counter[str] = collections.Counter()
        for terms in self.terms:
            df.update(terms)
        total = len(self.terms)
        self.idf = {t: math.log(1 + total / c) for t, c in df.items()}

    def _coverage(
        self,
        chunks: np.ndarray,
        wanted: dict[str, float],
        total: float,
        alternatives: dict[str, set[str]],
    ) -> tuple[float, float]:
        terms: set[str] = set()
        for i in chunks:
            terms |= self.terms[int(i)]
        return _coverage_of(terms, wanted, total, alternatives)

    def _doc(self, source: str) -> str:
        return source[len(self.prefix) :] if source.startswith(self.prefix) else source

    def candidates(self, query: str, vector: np.ndarray | None = None) -> Candidates:
        kb, n = self.kb, self.n
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if vector is None:
            vector = kb.embedder.embed_query([query])[0]
        t1 = time.perf_counter()
        all_dense = None
        if self.vectors is not None:
            all_dense = self.vectors @ vector.astype(np.float32)
            best = np.argpartition(-all_dense, n)[:n]
            dense_top = {self.ids[i]: float(all_dense[i]) for i in best}
        else:
            dense_top = {nb.id: nb.similarity for nb in kb.store.query(vector[None, :], n)[0]}
        t2 = time.perf_counter()
        tokens = kb.tokenizer(query)
        translated = self.dictionary.translate(tokens)
        bm = self.bm25.scores(tokens)
        bx = self.bm25.scores(translated) if translated else np.zeros_like(bm)
        bmx = bm + self.alpha * bx
        t3 = time.perf_counter()

        def top(scores: np.ndarray) -> list[int]:
            best = np.argpartition(-scores, n)[:n]
            return [int(i) for i in best if scores[i] > 0]

        pool = {self.position[c] for c in dense_top if c in self.position}
        pool.update(top(bm))
        pool.update(top(bmx))
        cand = np.array(sorted(pool))
        missing = [self.ids[i] for i in cand if self.ids[i] not in dense_top]
        dense_missing = {c: float(e @ vector) for c, e in kb.store.embeddings(missing).items()}
        dense = np.array(
            [dense_top.get(self.ids[i], dense_missing.get(self.ids[i], 0.0)) for i in cand]
        )
        t4 = time.perf_counter()
        w = self.dense_weight
        dn = _minmax(dense)
        fused = w * dn + (1 - w) * _minmax(bm[cand])
        fusedx = w * dn + (1 - w) * _minmax(bmx[cand])
        rank_dense = np.empty(len(cand))
        rank_dense[np.argsort(-dense, kind="stable")] = np.arange(len(cand))
        rank_bm = np.empty(len(cand))
        rank_bm[np.argsort(-bmx[cand], kind="stable")] = np.arange(len(cand))
        bm_top, bmx_top = max(float(bm.max()), 1e-9), max(float(bmx.max()), 1e-9)
        fb = self.fields.scores(tokens)
        fbx = fb + self.alpha * self.fields.scores(translated) if translated else fb
        fb = fb / max(float(fb.max()), 1e-9)
        fbx = fbx / max(float(fbx.max()), 1e-9)
        from knowledge.text import detect_language

        query_zh = float(detect_language(query) == "zh")
        tb = self.titles.scores(tokens)
        tb = tb / max(float(tb.max()), 1e-9)
        wanted = {t: self.idf.get(t, 0.0) for t in set(tokens)}
        wanted_total = sum(wanted.values()) or 1.0
        alternatives = {t: {t, *self.dictionary.translate([t])} for t in wanted}
        named = self.info.repos_named(query)
        groups: dict[int, list[int]] = collections.defaultdict(list)
        for j, i in enumerate(cand):
            groups[int(self.chunk_doc[i])].append(j)
        info = self.info
        rows, docs, best = [], [], []
        for d, members in groups.items():
            js = np.array(members)
            ds = np.sort(dense[js])[::-1]
            bs = np.sort(bm[cand[js]])[::-1]
            rows.append(
                [
                    ds[0],
                    ds[1] if len(ds) > 1 else 0.0,
                    bs[0] / bm_top,
                    (bs[1] if len(bs) > 1 else 0.0) / bm_top,
                    float(bmx[cand[js]].max()) / bmx_top,
                    float(fused[js].max()),
                    float(fusedx[js].max()),
                    math.log1p(len(js)),
                    1 / (1 + rank_dense[js].min()),
                    1 / (1 + rank_bm[js].min()),
                    float(fb[d]),
                    float(fbx[d]),
                    float(info.repo[d] in named),
                    float(bool(named) and info.repo[d] not in named),
                    float(info.zh[d] == query_zh),
                    float(info.kind[d] == 0),
                    float(info.kind[d] == 1),
                    float(info.kind[d] == 2),
                    float(info.kind[d] == 3),
                    math.log1p(info.chunks[d]),
                    float(tb[cand[js]].max()),
                    *self._coverage(cand[js], wanted, wanted_total, alternatives),
                    0.0,  # twin_fusedx, filled below
                ]
            )
            docs.append(info.docs[d])
            best.append(self.ids[int(cand[js[int(np.argmax(fusedx[js]))]])])
        where = {d: k for k, d in enumerate(groups)}
        for k, d in enumerate(groups):
            other = int(info.twin[d])
            if other >= 0 and other in where:
                rows[k][-1] = rows[where[other]][FEATURES.index("fusedx_max")]
        t5 = time.perf_counter()
        timings.update(embed=t1 - t0, dense=t2 - t1, bm25=t3 - t2, fill=t4 - t3, features=t5 - t4)
        return Candidates(docs, np.asarray(rows, dtype=float), best, timings)


def _coverage_of(
    terms: set[str], wanted: dict[str, float], total: float, alternatives: dict[str, set[str]]
) -> tuple[float, float]:
    plain = sum(w for t, w in wanted.items() if t in terms) / total
    either = sum(w for t, w in wanted.items() if alternatives[t] & terms) / total
    return plain, either


@dataclass
class LinearRanker:
    """``score = sum(coef * (x - mean) / scale) + intercept`` over ``FEATURES`` (or a subset)."""

    names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, names: Sequence[str], C: float = 0.1):
        from sklearn.linear_model import LogisticRegression

        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        model = LogisticRegression(C=C, max_iter=5000).fit((X - mean) / scale, y)
        return cls(list(names), mean, scale, model.coef_[0], float(model.intercept_[0]))

    def score(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.scale) @ self.coef + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.names,
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "coef": [round(float(v), 6) for v in self.coef],
            "intercept": round(self.intercept, 6),
        }
