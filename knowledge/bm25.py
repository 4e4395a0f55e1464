"""The lexical side of search: a tokenizer for Chinese and English, and a BM25 index (bm25s).

Chinese runs are cut by jieba in search mode (words and their parts, so 目标检测 also matches
检测); everything else is split into letters/digits, lower-cased and Snowball-stemmed
(PyStemmer). The index is rebuilt from tokens that the manifest keeps per chunk, so an update
only tokenizes the chunks that changed; rebuilding the matrix itself takes about a second for
15k chunks.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.text import CJK_CHARS

log = logging.getLogger(__name__)

_TOKEN = re.compile(rf"([{CJK_CHARS}]+)|([^\W_{CJK_CHARS}]+)")
_ZH_STOPWORDS_TEXT = """
的 了 是 在 和 与 及 或 而 我 你 他 她 它 我们 你们 他们 这 那 这个 那个 有 也 就 都 吗 呢 吧
啊 呀 哦 嗯 一个 一下 什么 怎么 怎样 如何 为什么 哪 哪个 请问 可以 能 能否 会 要 把 被 对
给 让 从 到 上 下 中 里 之 其 该 等 及其 以及 如果 但是 因为 所以 还是 已经 没有 不 没
"""
_ZH_STOPWORDS = frozenset(_ZH_STOPWORDS_TEXT.split())


@lru_cache(maxsize=1)
def _english_stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


class Tokenizer:
    """Text to BM25 terms; the same function for chunks and queries."""

    def __init__(self) -> None:
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
        lock = threading.Lock()

        def stem(word: str) -> str:
            # PyStemmer's stemmers are not thread-safe; searches run in worker threads.
            with lock:
                return str(stemmer.stemWord(word))

        self._stem = lru_cache(maxsize=200_000)(stem)
        self._jieba_lock = threading.Lock()
        self._jieba_ready = False
        self._stop = _english_stopwords()

    def _cut(self, run: str) -> list[str]:
        import jieba

        if not self._jieba_ready:
            with self._jieba_lock:
                if not self._jieba_ready:
                    jieba.setLogLevel(logging.WARNING)
                    jieba.initialize()
                    self._jieba_ready = True
        return jieba.lcut_for_search(run)

    def __call__(self, text: str) -> list[str]:
        tokens: list[str] = []
        stem = self._stem
        stop = self._stop
        for match in _TOKEN.finditer(text.lower()):
            cjk, word = match.groups()
            if cjk:
                tokens.extend(w for w in self._cut(cjk) if w not in _ZH_STOPWORDS)
            elif word not in stop:
                tokens.append(stem(word))
        return tokens


def _bm25s() -> Any:
    import bm25s

    # bm25s sets its own logger to DEBUG at import, which would print on every rebuild.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


class BM25Index:
    """bm25s over all chunks, with the chunk ids and collections alongside."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.ids: list[str] = []
        self.collections: np.ndarray = np.array([], dtype=object)
        self._retriever: object | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def build(self, ids: list[str], tokens: list[list[str]], collections: list[str]) -> None:
        bm25s = _bm25s()

        self.ids = list(ids)
        self.collections = np.array(collections, dtype=object)
        if not ids:
            self._retriever = None
            return
        retriever = bm25s.BM25(k1=self.k1, b=self.b)
        retriever.index(tokens, show_progress=False)
        self._retriever = retriever

    def scores(self, query_tokens: list[str], collection: str | None = None) -> np.ndarray:
        """BM25 score of every chunk for the query (0 where filtered out)."""
        if self._retriever is None or not query_tokens:
            return np.zeros(len(self.ids), dtype=np.float32)
        retriever = self._retriever
        token_ids = retriever.get_tokens_ids(query_tokens)  # type: ignore[attr-defined]
        if not token_ids:
            return np.zeros(len(self.ids), dtype=np.float32)
        scores = np.asarray(retriever.get_scores(token_ids), dtype=np.float32)  # type: ignore[attr-defined]
        if collection is not None:
            scores = np.where(self.collections == collection, scores, 0.0).astype(np.float32)
        return scores

    def top(
        self, query_tokens: list[str], k: int, collection: str | None = None
    ) -> tuple[list[tuple[str, float]], np.ndarray]:
        """The best ``k`` chunks with a score above zero, and the full score vector."""
        scores = self.scores(query_tokens, collection)
        if not len(scores):
            return [], scores
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in best if scores[i] > 0], scores

    # -- persistence ----------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if self._retriever is not None:
            self._retriever.save(str(folder / "index"))  # type: ignore[attr-defined]
        meta = {"ids": self.ids, "collections": list(self.collections), "k1": self.k1, "b": self.b}
        tmp = folder / "chunks.json.tmp"
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        tmp.replace(folder / "chunks.json")

    def load(self, folder: Path) -> bool:
        """Load a saved index; False when there is none (or it is unreadable)."""
        bm25s = _bm25s()

        try:
            meta = json.loads((folder / "chunks.json").read_text(encoding="utf-8"))
            ids = meta["ids"]
            retriever = bm25s.BM25.load(str(folder / "index")) if ids else None
        except (OSError, ValueError, KeyError) as exc:
            log.info("no usable BM25 index in %s (%s)", folder, exc)
            return False
        if meta.get("k1") != self.k1 or meta.get("b") != self.b:
            return False
        self.ids = ids
        self.collections = np.array(meta["collections"], dtype=object)
        self._retriever = retriever
        return True
