"""Text helpers every part of the bot shares: CJK detection, language, token estimates, and a
rough word overlap.

They live at the bottom of the dependency graph (``knowledge/`` imports nothing from the bot), so
the core, the adapters and the knowledge base all use these and none keeps its own copy.
"""

from __future__ import annotations

import re

# Chinese (with the extension-A block and compatibility ideographs), Japanese kana and Korean
# Hangul: scripts written without spaces between words, where one character is about a token.
CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
CJK = re.compile(f"[{CJK_CHARS}]")
# Han characters only: what tells Chinese from other text.
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
_TERM_WORD = re.compile(r"[a-z][a-z0-9_\-]{2,}|\d{2,}")
_HAN_RUN = re.compile(f"(?:{HAN.pattern})+")

# Characters of non-CJK text per token, measured on the OpenMMLab docs with the USE tokenizer.
CHARS_PER_TOKEN = 3.2


def has_cjk(text: str) -> bool:
    return CJK.search(text) is not None


def count_cjk(text: str) -> int:
    return len(CJK.findall(text))


def detect_language(text: str) -> str:
    """``zh`` when Chinese characters make up a fair share of the letters, else ``en``.

    Chinese questions often carry English identifiers (``mmdet 怎么安装``), so the bar is low.
    """
    han = len(HAN.findall(text))
    if han == 0:
        return "en"
    latin_words = len(_LATIN_WORD.findall(text))
    return "zh" if han >= latin_words or han >= 4 else "en"


def estimate_tokens(
    text: str, cjk_weight: float = 1.0, chars_per_token: float = CHARS_PER_TOKEN
) -> int:
    """Tokens without running a tokenizer: ``cjk_weight`` per CJK character (about 1 for
    Chinese-trained vocabularies, up to 1.5 for others) and one per ``chars_per_token`` other
    characters (3.2 in prose; code and numbers split finer).

    The defaults size chunks; prompt budgets ask for a high estimate, since running out of
    context is worse than leaving some unused.
    """
    cjk = count_cjk(text)
    return int(cjk * cjk_weight + 0.999) + int((len(text) - cjk) / chars_per_token) + 1


def terms(text: str) -> set[str]:
    """Words (three letters or more, lower-cased), numbers, and Chinese character pairs: for a
    rough "do these texts say the same thing" without a model."""
    lowered = text.lower()
    found = set(_TERM_WORD.findall(lowered))
    for run in _HAN_RUN.findall(lowered):
        found.update(run[i : i + 2] for i in range(max(1, len(run) - 1)))
    return found


def overlap(text: str, other: str) -> float:
    """The share of ``text``'s terms that ``other`` has too (0 when ``text`` has none)."""
    wanted = terms(text)
    return len(wanted & terms(other)) / len(wanted) if wanted else 0.0


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' terms: 1 for the same words in any order."""
    first, second = terms(a), terms(b)
    union = first | second
    return len(first & second) / len(union) if union else 0.0
