"""Rank documents, not chunks: a linear model over what is known of each candidate document.

Search proposes candidate chunks (the dense top n, the BM25 top n, and the top n of BM25 with
the question's terms translated by ``knowledge.bilingual``); they are grouped by document, and
each document gets 25 features: its chunks' best and second-best scores and ranks, how many of
its chunks were proposed, BM25 over its path and headings (the "field index"), whether the
question names its repository, its language against the question's, what kind of file it is
(and whether it is an FAQ or troubleshooting page while the question reports a problem), its
size, how much of the question's terms (by IDF) its proposed chunks hold, with and without
translations, and how many of the question's code-like words they hold verbatim. A logistic
regression fitted on hand-written questions over the OpenMMLab documentation
(``bench/accuracy.py`` fits and measures it) weighs them; its weights ship in
``knowledge/data/ranker.json`` with the feature version they belong to.

What it needs beyond the BM25 index is built from the manifest after each build that changed
something (``DocumentIndex.build``, a few seconds for 16k chunks) and saved beside the index in
``<work_dir>/knowledge/ranking/``, tagged with the manifest's generation.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from knowledge.bilingual import BilingualDictionary, Page, aligned_sections, find_twins
from knowledge.bm25 import BM25Index
from knowledge.manifest import Manifest
from knowledge.text import detect_language

log = logging.getLogger(__name__)

# Bump when a feature's definition changes: weights fitted for another version are not used.
FEATURE_VERSION = 3
# Bump when the saved document index changes shape or how it is derived (2: the dictionary is
# mined from sections): an older one is rebuilt from the manifest.
INDEX_FORMAT = 2
INDEX_FILE = "documents.npz"
MODEL_FILE = Path(__file__).parent / "data" / "ranker.json"
# A document is Chinese when this share of its characters is.
CHINESE_SHARE = 0.05

FEATURES: tuple[str, ...] = (
    "dense_max",  # best cosine of its candidate chunks to the question
    "dense_2nd",  # second best (0 with one chunk)
    "bm_max",  # best BM25 of its chunks, over the best BM25 of any chunk
    "bm_2nd",
    "bmx_max",  # the same with the translated terms added to the question
    "fused_max",  # best weighted sum of min-max scaled dense and BM25, over the candidates
    "fusedx_max",  # the same with the expanded BM25
    "n_pool",  # log(1 + its candidate chunks)
    "dense_rank",  # 1 / (1 + best rank of its chunks by dense)
    "bm_rank",  # 1 / (1 + best rank of its chunks by expanded BM25)
    "field_bm",  # BM25 of the question over its path and headings, over the best document's
    "field_bmx",  # the same with the translated terms
    "repo_match",  # the question names its repository
    "repo_other",  # the question names a repository, not this one
    "same_lang",  # it is written in the question's language
    "kind_docs",  # under a docs folder
    "kind_readme",  # the README at the top of its repository
    "kind_subreadme",  # another README
    "kind_txt",  # a .txt file
    "log_chunks",  # log(1 + its chunks)
    "coverage",  # IDF share of the question's terms found in its candidate chunks
    "coverage_x",  # the same, a term's translation counting as the term
    "identifiers",  # share of the question's code-like words found verbatim in those chunks
    "identifiers_asked",  # the question holds code-like words (MMDEPLOY_TARGET_BACKENDS)
    "faq_for_problem",  # an FAQ or troubleshooting page, and the question reports a problem
)

_WORD = re.compile(r"[a-z][a-z0-9_\-]{2,}")
# Code-like words: snake_case, dotted and dashed names, paths, camelCase, CamelCase, acronyms
# with a tail (ONNXRuntime). BM25 splits them into parts; found whole, they say much more.
_IDENTIFIER = re.compile(
    r"[A-Za-z][A-Za-z0-9]*(?:[_.\-:/][A-Za-z0-9]+)+|[a-z]+[A-Z][A-Za-z0-9]+"
    r"|[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*|[A-Z]{2,}[a-z]+[A-Za-z]*"
)
_PATH_PUNCTUATION = re.compile(r"[/_\-.]")
# Group-chat questions that report a problem are often the very ones these pages collect.
_FAQ_NAME = re.compile(r"faq|troubleshoot|常见问题", re.IGNORECASE)
_PROBLEM = re.compile(
    r"error|exception|traceback|fail|crash|segfault|\bnan\b|\boom\b|out of memory|warning|wrong"
    r"|(?:not|n'?t) work|can'?t|cannot|unable|stuck|\bhangs?\b|slow|not found|no module|\bwhy\b"
    r"|\bbug|报错|错误|失败|出错|异常|跑不|不行|不了|无法|为什么|为啥|咋|问题|卡住|卡死|慢|找不到|不对|崩",
    re.IGNORECASE,
)

KIND_DOCS, KIND_README, KIND_SUBREADME, KIND_TXT, KIND_OTHER = range(5)


def _is_readme(name: str) -> bool:
    return name.lower().startswith("readme")


def repositories(sources: list[str]) -> list[str]:
    """The repository folder of each document (``""`` for a single-file source).

    A source folder that holds several projects (``kb/mmdetection/...``, ``kb/mmpose/...``)
    has a README at the top of each: a folder directly under the source with a README of its own
    is a repository. Otherwise the source folder is the repository.
    """
    readme_folders = {
        s.rsplit("/", 1)[0] for s in sources if _is_readme(PurePosixPath(s).name) and "/" in s
    }
    out = []
    for source in sources:
        parts = source.split("/")
        if len(parts) >= 3 and f"{parts[0]}/{parts[1]}" in readme_folders:
            out.append(f"{parts[0]}/{parts[1]}")
        else:
            out.append(parts[0] if len(parts) > 1 else "")
    return out


def document_kind(source: str, repository: str) -> int:
    inside = source[len(repository) + 1 :] if repository else source
    parts = inside.split("/")
    if _is_readme(parts[-1]):
        return KIND_README if len(parts) == 1 else KIND_SUBREADME
    if "docs" in parts[:-1]:
        return KIND_DOCS
    if parts[-1].lower().endswith(".txt"):
        return KIND_TXT
    return KIND_OTHER


def is_faq_page(source: str) -> bool:
    """Its file name or folder says FAQ or troubleshooting (not the source folder's name)."""
    return any(_FAQ_NAME.search(part) for part in source.split("/")[-2:])


def reports_problem(question: str) -> bool:
    """An error, a failure, a "why": what FAQ and troubleshooting pages answer."""
    return bool(_PROBLEM.search(question))


def identifiers(question: str) -> set[str]:
    """The question's code-like words of four characters or more, lower-cased."""
    return {m.lower() for m in _IDENTIFIER.findall(question) if len(m) >= 4}


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def top_positions(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` best scores above zero."""
    best = np.argpartition(-scores, n)[:n] if len(scores) > n else np.arange(len(scores))
    return best[scores[best] > 0]


@dataclass(slots=True)
class Candidates:
    """One question's candidate documents: their features and their chunks, best first."""

    documents: list[int]
    features: np.ndarray  # (documents, FEATURES)
    chunks: list[list[int]]  # chunk positions (in the BM25 index) per document, best first
    fused: dict[int, float]  # chunk position -> weighted sum of dense and BM25 (expanded)


class DocumentIndex:
    """Per document: key, source, collection, repository, language, kind, size, translation;
    per chunk: its document and its terms; the bilingual dictionary and the field index."""

    def __init__(
        self,
        generation: str,
        keys: list[str],
        sources: list[str],
        collections: list[str],
        chinese: np.ndarray,
        chunk_document: np.ndarray,
        term_start: np.ndarray,
        term_ids: np.ndarray,
        vocabulary: list[str],
        document_frequency: np.ndarray,
        dictionary: BilingualDictionary,
        field_tokens: list[list[str]],
        twin_pairs: list[tuple[int, int]],
    ) -> None:
        self.generation = generation
        self.keys = keys
        self.sources = sources
        self.collections = np.array(collections, dtype=object)
        self.chinese = chinese.astype(bool)
        self.chunk_document = chunk_document.astype(np.int32)
        self.term_start = term_start.astype(np.int64)
        self.term_ids = term_ids.astype(np.int32)
        self.vocabulary = vocabulary
        self.term_id = {term: i for i, term in enumerate(vocabulary)}
        self.document_frequency = document_frequency.astype(np.int64)
        self.dictionary = dictionary
        self.field_tokens = field_tokens
        self.twin_pairs = twin_pairs
        self.twin = np.full(len(keys), -1, dtype=np.int32)
        for english, chinese_page in twin_pairs:
            self.twin[english], self.twin[chinese_page] = chinese_page, english
        self.repository = repositories(sources)
        self.kind = np.array(
            [document_kind(s, r) for s, r in zip(sources, self.repository, strict=True)],
            dtype=np.int8,
        )
        self.faq = np.array([is_faq_page(s) for s in sources], dtype=bool)
        self.chunk_count = np.bincount(self.chunk_document, minlength=len(keys)).astype(float)
        names = {r.rsplit("/", 1)[-1].lower() for r in self.repository if r}
        # One repository (or none) says nothing about which document answers.
        self.repository_names = sorted(names) if len(names) > 1 else []
        self.fields = BM25Index()
        self.fields.build(keys, field_tokens, collections)

    def __len__(self) -> int:
        return len(self.keys)

    # -- building and storing -----------------------------------------------------------------

    @classmethod
    def build(
        cls, manifest: Manifest, tokenize: Callable[[str], list[str]], generation: str
    ) -> DocumentIndex:
        """Everything from the manifest: no document is read again."""
        _, tokens, _ = manifest.all_tokens()
        chunk_documents, titles = manifest.all_chunk_documents()
        documents = manifest.documents()
        facts = manifest.facts()
        keys = sorted(documents)
        where = {key: i for i, key in enumerate(keys)}
        chunk_document = np.array([where[d] for d in chunk_documents], dtype=np.int32)
        vocabulary: dict[str, int] = {}
        starts = [0]
        term_ids: list[int] = []
        for terms in tokens:
            found = sorted({vocabulary.setdefault(t, len(vocabulary)) for t in terms})
            term_ids.extend(found)
            starts.append(len(term_ids))
        term_array = np.array(term_ids, dtype=np.int32)
        frequency = np.bincount(term_array, minlength=len(vocabulary))
        sources = [documents[key].source for key in keys]
        chinese = np.array(
            [key in facts and facts[key].cjk_share > CHINESE_SHARE for key in keys], dtype=bool
        )
        pairs = find_twins(keys, list(chinese))
        # Only translated pages teach the dictionary: the other pages' chunks are not needed.
        translated = {keys[i] for pair in pairs for i in pair}
        chunks_of: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
        for key, title, terms in zip(chunk_documents, titles, tokens, strict=True):
            if key in translated:
                chunks_of[key].append((title, terms))

        def page(key: str) -> Page:
            return Page(facts[key].headings, chunks_of[key])

        dictionary = BilingualDictionary.mine(
            aligned_sections(
                (
                    (page(keys[en]), page(keys[zh]))
                    for en, zh in pairs
                    if keys[en] in facts and keys[zh] in facts
                ),
                tokenize,
            )
        )
        headings: dict[int, set[str]] = defaultdict(set)
        for document, title in zip(chunk_document, titles, strict=True):
            headings[int(document)].update(part.strip() for part in title.split(" > "))
        field_tokens = [
            tokenize(_PATH_PUNCTUATION.sub(" ", source) + "\n" + "\n".join(sorted(headings[i])))
            for i, source in enumerate(sources)
        ]
        return cls(
            generation=generation,
            keys=keys,
            sources=sources,
            collections=[documents[key].collection for key in keys],
            chinese=chinese,
            chunk_document=chunk_document,
            term_start=np.array(starts, dtype=np.int64),
            term_ids=term_array,
            vocabulary=list(vocabulary),
            document_frequency=frequency,
            dictionary=dictionary,
            field_tokens=field_tokens,
            twin_pairs=pairs,
        )

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": INDEX_FORMAT,
            "generation": self.generation,
            "keys": self.keys,
            "sources": self.sources,
            "collections": list(self.collections),
            "vocabulary": self.vocabulary,
            "dictionary": self.dictionary.to_dict(),
            "field_tokens": self.field_tokens,
            "twin_pairs": self.twin_pairs,
        }
        tmp = folder / f"{INDEX_FILE}.{os.getpid()}.{threading.get_ident()}.tmp.npz"
        np.savez(
            tmp,
            meta=np.array(json.dumps(meta, ensure_ascii=False)),
            chinese=self.chinese,
            chunk_document=self.chunk_document,
            term_start=self.term_start,
            term_ids=self.term_ids,
            document_frequency=self.document_frequency,
        )
        tmp.replace(folder / INDEX_FILE)

    @classmethod
    def load(cls, folder: Path, generation: str | None) -> DocumentIndex | None:
        """The saved index if it belongs to this generation of the manifest, else None."""
        try:
            with np.load(folder / INDEX_FILE, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != INDEX_FORMAT or meta.get("generation") != generation:
                    return None
                return cls(
                    generation=meta["generation"],
                    keys=meta["keys"],
                    sources=meta["sources"],
                    collections=meta["collections"],
                    chinese=data["chinese"],
                    chunk_document=data["chunk_document"],
                    term_start=data["term_start"],
                    term_ids=data["term_ids"],
                    vocabulary=meta["vocabulary"],
                    document_frequency=data["document_frequency"],
                    dictionary=BilingualDictionary.from_dict(meta["dictionary"]),
                    field_tokens=meta["field_tokens"],
                    twin_pairs=[(int(a), int(b)) for a, b in meta["twin_pairs"]],
                )
        except (OSError, KeyError, ValueError) as exc:
            log.info("no usable document index in %s (%s)", folder, exc)
            return None

    # -- per question -------------------------------------------------------------------------

    def language(self, document: int) -> str:
        return "zh" if self.chinese[document] else "en"

    def idf(self, term: int) -> float:
        """ln(1 + chunks / chunks holding the term)."""
        return math.log(1 + len(self.chunk_document) / self.document_frequency[term])

    def chunks_of(self, document: int) -> np.ndarray:
        return np.flatnonzero(self.chunk_document == document)

    def repositories_named(self, question: str) -> set[str]:
        """Repository names the question uses: a word equal to one, or a prefix of at least
        four letters of exactly one (``mmdet`` names ``mmdetection``)."""
        found = set()
        for word in _WORD.findall(question.lower()):
            if word in self.repository_names:
                found.add(word)
                continue
            if len(word) >= 4:
                prefixed = [n for n in self.repository_names if n.startswith(word)]
                if len(prefixed) == 1:
                    found.add(prefixed[0])
        return found

    def _chunk_terms(self, chunks: np.ndarray) -> set[int]:
        found: set[int] = set()
        for chunk in chunks:
            start, end = self.term_start[chunk], self.term_start[chunk + 1]
            found.update(self.term_ids[start:end].tolist())
        return found

    def candidates(
        self,
        question: str,
        tokens: list[str],
        translated: list[str],
        pool: np.ndarray,
        dense: np.ndarray,
        bm: np.ndarray,
        bmx: np.ndarray,
        dense_weight: float,
        expansion_weight: float,
        collection: str | None,
        texts: Callable[[list[int]], dict[int, str]],
    ) -> Candidates:
        """Feature rows for the documents of the candidate chunks ``pool`` (positions), given
        their dense scores and every chunk's BM25 scores, plain (``bm``) and expanded;
        ``texts`` gives chunks' headings and text (read only when the question holds code-like
        words)."""
        w = dense_weight
        dense_scaled = _minmax(dense)
        fused = w * dense_scaled + (1 - w) * _minmax(bm[pool])
        fusedx = w * dense_scaled + (1 - w) * _minmax(bmx[pool])
        rank_dense = np.empty(len(pool))
        rank_dense[np.argsort(-dense, kind="stable")] = np.arange(len(pool))
        rank_bm = np.empty(len(pool))
        rank_bm[np.argsort(-bmx[pool], kind="stable")] = np.arange(len(pool))
        bm_top = max(float(bm.max()), 1e-9) if len(bm) else 1e-9
        bmx_top = max(float(bmx.max()), 1e-9) if len(bmx) else 1e-9
        fields = self.fields.scores(tokens, collection)
        fields_x = fields
        if translated:
            fields_x = fields + expansion_weight * self.fields.scores(translated, collection)
        fields = fields / max(float(fields.max()), 1e-9)
        fields_x = fields_x / max(float(fields_x.max()), 1e-9)
        question_chinese = detect_language(question) == "zh"
        wanted: dict[int, float] = {}
        wanted_x: dict[int, set[int]] = {}
        total = 0.0
        for token in set(tokens):
            term = self.term_id.get(token)
            weight = self.idf(term) if term is not None else 0.0
            total += weight
            if term is not None:
                wanted[term] = weight
                wanted_x[term] = {
                    self.term_id[t]
                    for t in self.dictionary.alternatives(token)
                    if t in self.term_id
                }
        total = total or 1.0
        named = self.repositories_named(question)
        asked = identifiers(question)
        problem = reports_problem(question)
        found = texts([int(c) for c in pool]) if asked else {}
        groups: dict[int, list[int]] = defaultdict(list)
        for j, chunk in enumerate(pool):
            groups[int(self.chunk_document[chunk])].append(j)
        rows, documents, chunks = [], [], []
        for document, members in groups.items():
            js = np.array(members)
            ds = np.sort(dense[js])[::-1]
            bs = np.sort(bm[pool[js]])[::-1]
            terms = self._chunk_terms(pool[js])
            coverage = sum(w for t, w in wanted.items() if t in terms) / total
            coverage_x = sum(w for t, w in wanted.items() if wanted_x[t] & terms) / total
            repository = self.repository[document].rsplit("/", 1)[-1].lower()
            kind = self.kind[document]
            text = " ".join(found.get(int(c), "") for c in pool[js]).lower()
            rows.append(
                [
                    ds[0],
                    ds[1] if len(ds) > 1 else 0.0,
                    bs[0] / bm_top,
                    (bs[1] if len(bs) > 1 else 0.0) / bm_top,
                    float(bmx[pool[js]].max()) / bmx_top,
                    float(fused[js].max()),
                    float(fusedx[js].max()),
                    math.log1p(len(js)),
                    1 / (1 + rank_dense[js].min()),
                    1 / (1 + rank_bm[js].min()),
                    float(fields[document]),
                    float(fields_x[document]),
                    float(repository in named),
                    float(bool(named) and repository not in named),
                    float(self.chinese[document] == question_chinese),
                    float(kind == KIND_DOCS),
                    float(kind == KIND_README),
                    float(kind == KIND_SUBREADME),
                    float(kind == KIND_TXT),
                    math.log1p(self.chunk_count[document]),
                    coverage,
                    coverage_x,
                    sum(word in text for word in asked) / len(asked) if asked else 0.0,
                    float(bool(asked)),
                    float(problem and self.faq[document]),
                ]
            )
            documents.append(document)
            chunks.append([int(pool[j]) for j in js[np.argsort(-fusedx[js], kind="stable")]])
        return Candidates(
            documents=documents,
            features=np.asarray(rows, dtype=float).reshape(len(rows), len(FEATURES)),
            chunks=chunks,
            fused={int(c): float(f) for c, f in zip(pool, fusedx, strict=True)},
        )


class RankerError(Exception):
    """The ranker's weights cannot be used (missing, unreadable, or for other features)."""


@dataclass(slots=True)
class DocumentRanker:
    """``score = sum(coef * (x - mean) / scale) + intercept``: the log-odds that a candidate
    document answers the question."""

    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    # How the features were computed when the weights were fitted.
    dense_weight: float = 0.4
    expansion_weight: float = 1.0

    @classmethod
    def load(cls, path: Path = MODEL_FILE) -> DocumentRanker:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RankerError(f"cannot read the ranker's weights {path}: {exc}") from None
        if data.get("feature_version") != FEATURE_VERSION or data.get("features") != list(
            FEATURES
        ):
            raise RankerError(
                f"{path} holds weights for other features (version "
                f"{data.get('feature_version')}, this code computes version {FEATURE_VERSION})"
            )
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DocumentRanker:
        return cls(
            features=list(data["features"]),
            mean=np.asarray(data["mean"], dtype=float),
            scale=np.asarray(data["scale"], dtype=float),
            coef=np.asarray(data["coef"], dtype=float),
            intercept=float(data["intercept"]),
            dense_weight=float(data.get("dense_weight", 0.4)),
            expansion_weight=float(data.get("expansion_weight", 1.0)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_version": FEATURE_VERSION,
            "features": self.features,
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "coef": [round(float(v), 6) for v in self.coef],
            "intercept": round(self.intercept, 6),
            "dense_weight": self.dense_weight,
            "expansion_weight": self.expansion_weight,
        }

    def standardized(self, features: np.ndarray, neutral: tuple[str, ...] = ()) -> np.ndarray:
        """Each feature as standard deviations from its mean; ``neutral`` ones at 0 (the
        corpus cannot say anything about them)."""
        z = (features - self.mean) / self.scale
        for name in neutral:
            z[:, self.features.index(name)] = 0.0
        return z

    def score(self, features: np.ndarray, neutral: tuple[str, ...] = ()) -> np.ndarray:
        return self.standardized(features, neutral) @ self.coef + self.intercept

    def contributions(
        self, features: np.ndarray, row: int, neutral: tuple[str, ...] = (), top: int = 3
    ) -> dict[str, float]:
        """What set one candidate apart from the question's other candidates: the features
        that moved its score most away from their average score (log-odds)."""
        z = self.standardized(features, neutral)
        parts = (z[row] - z.mean(axis=0)) * self.coef
        order = np.argsort(-np.abs(parts))[:top]
        return {self.features[i]: round(float(parts[i]), 3) for i in order}


def probability(score: float) -> float:
    return 1.0 / (1.0 + math.exp(-score))
