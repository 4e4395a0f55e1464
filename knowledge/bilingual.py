"""Translated pages and the term dictionary mined from them, for questions asked in the other
language.

Documentation often comes in English and Chinese (``docs/en/x.md`` and ``docs/zh_cn/x.md``,
``README.md`` and ``README_zh-CN.md``). Such twins are found by their names; where both have
the same outline (the same number of headings at the same levels), their sections are
translations of each other, one to one. Terms that keep appearing together in those section
pairs (安装 and "instal", 量化 and "quantiz", 打印 and "print") make a dictionary: a question's
terms are translated with it and searched as a second query, so "怎么量化模型" finds the English
page on quantization. Sections, not just their headings, are paired because a section's body
holds the everyday words (日志, 显存, 报错) that headings rarely use. The terms are BM25 terms
(``knowledge.bm25.Tokenizer``): jieba words and stemmed English.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from knowledge.text import HAN

# Folders that hold one language's pages (compared lower-cased).
_LANGUAGE_FOLDERS = {
    "en": "en",
    "zh_cn": "zh",
    "zh-cn": "zh",
    "zh_hans": "zh",
    "zh-hans": "zh",
    "zh": "zh",
    "cn": "zh",
}
# File names marked as one language's version: README_zh-CN.md, README_CN.md, intro_zh.md,
# intro_en.md; the unmarked README.md pairs with a Chinese-marked one.
_ZH_NAME = re.compile(r"[_.-](zh[_-]?cn|zh[_-]hans|zh|cn)$", re.I)
_EN_NAME = re.compile(r"[_.-]en$", re.I)


def language_slot(source: str) -> tuple[str, str]:
    """The name shared by a page's translations, and which one this is: ``zh``, ``en``, or
    ``""`` for a page whose name says nothing (``README.md``)."""
    parts = source.split("/")
    for i, part in enumerate(parts[:-1]):
        language = _LANGUAGE_FOLDERS.get(part.lower())
        if language is not None:
            return "/".join([*parts[:i], "{}", *parts[i + 1 :]]), language
    name = PurePosixPath(parts[-1])
    for pattern, language in ((_ZH_NAME, "zh"), (_EN_NAME, "en")):
        match = pattern.search(name.stem)
        if match:
            stem = name.stem[: match.start()]
            return "/".join([*parts[:-1], stem + name.suffix]), language
    return source, ""


def find_twins(sources: Sequence[str], chinese: Sequence[bool]) -> list[tuple[int, int]]:
    """(English, Chinese) index pairs of translated pages among ``sources``; ``chinese`` says
    which documents are written in Chinese (their text, not their name, decides)."""
    slots: dict[str, dict[str, int]] = defaultdict(dict)
    for i, source in enumerate(sources):
        slot, language = language_slot(source)
        slots[slot].setdefault(language, i)
    pairs = []
    for found in slots.values():
        zh = found.get("zh")
        en = found.get("en", found.get(""))
        if zh is not None and en is not None and chinese[zh] and not chinese[en]:
            pairs.append((en, zh))
    return sorted(pairs)


@dataclass(slots=True)
class Page:
    """What the dictionary needs of a page: its outline, and its chunks' titles (heading paths,
    "Install > Verify") with their BM25 terms."""

    headings: Sequence[tuple[int, str]]
    chunks: Sequence[tuple[str, Collection[str]]]

    def sections(self) -> dict[int, set[str]]:
        """Its terms by section (the index of the heading a chunk's title ends in)."""
        where: dict[str, int] = {}
        path: list[tuple[int, str]] = []
        for i, (level, text) in enumerate(self.headings):
            path = [*(p for p in path if p[0] < level), (level, text)]
            where.setdefault(" > ".join(t for _, t in path), i)
        terms: dict[int, set[str]] = defaultdict(set)
        for title, chunk_terms in self.chunks:
            section = where.get(title)
            if section is not None:
                terms[section].update(chunk_terms)
        return terms


def aligned_sections(
    twins: Iterable[tuple[Page, Page]], tokenize: Callable[[str], list[str]]
) -> list[tuple[set[str], set[str]]]:
    """(English, Chinese) terms of twin pages whose outlines match exactly: of each pair of
    headings, the surest alignment, and of each pair of sections, the richest."""
    pairs: list[tuple[set[str], set[str]]] = []
    for english, chinese in twins:
        levels = [level for level, _ in english.headings]
        if not levels or levels != [level for level, _ in chinese.headings]:
            continue
        for (_, a), (_, b) in zip(english.headings, chinese.headings, strict=True):
            pairs.append((set(tokenize(a)), set(tokenize(b))))
        a_terms, b_terms = english.sections(), chinese.sections()
        pairs.extend((a_terms[i], b_terms[i]) for i in sorted(a_terms.keys() & b_terms.keys()))
    return pairs


@dataclass(slots=True)
class BilingualDictionary:
    """Chinese term -> English terms and back, best first, as BM25 terms."""

    zh2en: dict[str, list[str]] = field(default_factory=dict)
    en2zh: dict[str, list[str]] = field(default_factory=dict)
    pairs: int = 0  # aligned headings and sections it was mined from

    def __len__(self) -> int:
        return len(self.zh2en) + len(self.en2zh)

    @classmethod
    def mine(
        cls,
        pairs: Iterable[tuple[Collection[str], Collection[str]]],
        min_count: int = 2,
        min_dice: float = 0.5,
        max_shared: float = 0.5,
        keep: int = 3,
    ) -> BilingualDictionary:
        """Pair the terms that appear together in at least ``min_count`` aligned headings or
        sections with a Dice coefficient of at least ``min_dice``; keep each term's ``keep``
        best partners. An English term that the Chinese side uses as it is (int8, pip, a
        class name) in more than ``max_shared`` of its pairs needs no translation and gets
        none. Measured on the OpenMMLab docs (``bench/ACCURACY_NOTES.md``, section 13): the
        ranker gains as much for a Dice of 0.4 to 0.6, a count of 2 to 5 and a shared share
        of 0.5 to 0.7."""
        count_en: Counter[str] = Counter()
        count_zh: Counter[str] = Counter()
        count_both: Counter[tuple[str, str]] = Counter()
        count_shared: Counter[str] = Counter()
        used = 0
        for english, chinese in pairs:
            terms_en = {t for t in english if len(t) > 1 and not t.isdigit() and not HAN.search(t)}
            terms_zh = {t for t in chinese if HAN.search(t)}
            if not terms_en or not terms_zh:
                continue
            used += 1
            count_en.update(terms_en)
            count_zh.update(terms_zh)
            count_both.update((e, z) for e in terms_en for z in terms_zh)
            count_shared.update(terms_en.intersection(chinese))
        zh2en: dict[str, list[tuple[float, str]]] = defaultdict(list)
        en2zh: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for (e, z), count in count_both.items():
            if count < min_count or count_shared[e] > max_shared * count_en[e]:
                continue
            dice = 2 * count / (count_en[e] + count_zh[z])
            if dice >= min_dice:
                zh2en[z].append((dice, e))
                en2zh[e].append((dice, z))
        return cls(
            {z: [e for _, e in sorted(v, reverse=True)[:keep]] for z, v in sorted(zh2en.items())},
            {e: [z for _, z in sorted(v, reverse=True)[:keep]] for e, v in sorted(en2zh.items())},
            used,
        )

    def translate(self, tokens: Sequence[str]) -> list[str]:
        """The best translation of each term that has one, leaving out terms already there."""
        present = set(tokens)
        out: list[str] = []
        for token in tokens:
            table = self.zh2en if HAN.search(token) else self.en2zh
            best = table.get(token)
            if best and best[0] not in present:
                out.append(best[0])
        return out

    def alternatives(self, token: str) -> set[str]:
        """The term and its best translation."""
        table = self.zh2en if HAN.search(token) else self.en2zh
        return {token, *table.get(token, [])[:1]}

    def to_dict(self) -> dict[str, Any]:
        return {"zh2en": self.zh2en, "en2zh": self.en2zh, "pairs": self.pairs}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BilingualDictionary:
        return cls(dict(data["zh2en"]), dict(data["en2zh"]), int(data["pairs"]))
