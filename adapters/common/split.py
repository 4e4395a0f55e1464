"""Cut a long answer into messages a platform accepts: by characters (Feishu, DingTalk) or by
UTF-8 bytes (WeCom's 2048-byte limit), at paragraph breaks, then line breaks, then spaces, and
never through a code block that fits in one message or through a character."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

Measure = Callable[[str], int]

_FENCE = re.compile(r"```([\w+#.\-]*)[ \t]*\n(.*?)(?:\n)?```", re.S)


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def blocks(text: str) -> Iterator[tuple[str, str, str]]:
    """('text', '', paragraph) and ('code', language, code) in order."""
    position = 0
    for match in _FENCE.finditer(text):
        yield from _text_blocks(text[position : match.start()])
        yield ("code", match.group(1), match.group(2))
        position = match.end()
    yield from _text_blocks(text[position:])


def _text_blocks(text: str) -> Iterator[tuple[str, str, str]]:
    for paragraph in re.split(r"\n\s*\n", text):
        if paragraph.strip():
            yield ("text", "", paragraph.strip("\n"))


def split_text(text: str, limit: int, measure: Measure = len) -> list[str]:
    """Pieces of at most ``limit`` (as ``measure`` counts), joined back by blank lines."""
    if measure(text) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for unit in _units(text, limit, measure):
        joined = f"{current}\n\n{unit}" if current else unit
        if measure(joined) <= limit:
            current = joined
        else:
            if current:
                pieces.append(current)
            current = unit
    if current:
        pieces.append(current)
    return pieces


def _units(text: str, limit: int, measure: Measure) -> Iterator[str]:
    """Paragraphs and code blocks, each cut down to ``limit`` if needed."""
    for kind, language, body in blocks(text):
        unit = f"```{language}\n{body}\n```" if kind == "code" else body
        if measure(unit) <= limit:
            yield unit
        else:
            yield from _hard_split(unit, limit, measure)


def _longest_prefix(text: str, limit: int, measure: Measure) -> int:
    """The most characters of ``text`` whose measure is within ``limit`` (at least one)."""
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def _hard_split(text: str, limit: int, measure: Measure) -> Iterator[str]:
    while measure(text) > limit:
        fits = _longest_prefix(text, limit, measure)
        cut = text.rfind("\n", 0, fits)
        if cut < fits // 2:
            cut = text.rfind(" ", 0, fits)
        if cut < fits // 2:
            cut = fits
        yield text[:cut].rstrip()
        text = text[cut:].lstrip()
    if text:
        yield text
