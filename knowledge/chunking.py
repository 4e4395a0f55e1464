"""Cut documents into passages sized for the embedder, keeping the structure readers cite.

Markdown (and what the loaders turn into Markdown) is split by headings first: every chunk keeps
its heading path ("Install > Verify") as its title, code blocks stay whole where they fit, and
small neighbouring sections share a chunk instead of becoming many tiny ones. Long prose is split
at sentence ends, Chinese (。！？) as well as English, with a small overlap between the pieces.
Sizes are estimated without running the embedder's tokenizer: Chinese characters count one token
each, other text one token per few characters, which is close enough to size chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from knowledge.loaders import Loaded
from knowledge.text import estimate_tokens

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_BLANK = re.compile(r"\n[ \t]*\n")
# A sentence ends after Chinese end punctuation (and any closing quote), after . ; : ! ? followed
# by white space, or at a line break.
_SENTENCE_END = re.compile(
    r"(?<=[。！？；!?][”’」』）)])|(?<=[。！？；])(?![”’」』）)])|(?<=[.;:!?])(?=\s)|(?<=\n)"
)
# A list item's marker ("5.", "-") is not a sentence of its own.
_LIST_MARKER = re.compile(r"\s*(?:[-*+]|\d{1,3}[.)])\s*")
_CODE_START = re.compile(
    r"^(?:async\s+def|def|class|func|fn|pub\s+fn|function|export|public|private|protected|"
    r"static|struct|impl|interface|type|module|package|template|namespace)\b"
)


@dataclass(frozen=True, slots=True)
class TextChunk:
    text: str
    title: str = ""


def chunk_document(loaded: Loaded, max_tokens: int, overlap_tokens: int) -> list[TextChunk]:
    """Split one loaded document into chunks of at most about ``max_tokens`` tokens."""
    if loaded.kind == "code":
        sections = _code_sections(loaded.text)
        return _pack(sections, max_tokens, 0, merge_below=max_tokens // 4, headings=False)
    if loaded.kind == "pdf" and loaded.pages:
        sections = [([f"p. {n}"], _paragraphs(text)) for n, text in loaded.pages]
        return _pack(sections, max_tokens, overlap_tokens, merge_below=0)
    headings = loaded.kind != "text"
    sections = _markdown_sections(loaded.text, headings=headings)
    return _pack(sections, max_tokens, overlap_tokens, merge_below=max_tokens // 4)


def outline(loaded: Loaded) -> list[tuple[int, str]]:
    """The document's headings, (level, text) in order, outside code blocks: translated pages
    with the same outline are aligned heading by heading, section by section
    (``knowledge.bilingual``)."""
    if loaded.kind in ("code", "pdf", "text"):
        return []
    found: list[tuple[int, str]] = []
    fence: str | None = None
    for line in loaded.text.splitlines():
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and stripped.strip(fence[0]) == "":
                fence = None
            continue
        opening = _FENCE.match(line)
        if opening:
            fence = opening.group(1)
            continue
        heading = _HEADING.match(line)
        if heading:
            found.append((len(heading.group(1)), heading.group(2).strip()))
    return found


# -- sections and blocks -------------------------------------------------------------------------

Block = tuple[str, bool]  # (text, is_code)
Section = tuple[list[str], list[Block]]  # (heading path, blocks)


def _paragraphs(text: str) -> list[Block]:
    return [(p.strip("\n"), False) for p in _BLANK.split(text) if p.strip()]


def _markdown_sections(text: str, *, headings: bool = True) -> list[Section]:
    sections: list[Section] = []
    path: list[str] = []
    blocks: list[Block] = []
    prose: list[str] = []
    fence: str | None = None
    code: list[str] = []

    def end_prose() -> None:
        if prose:
            blocks.extend(_paragraphs("\n".join(prose)))
            prose.clear()

    for line in text.splitlines():
        if fence is not None:
            code.append(line)
            stripped = line.strip()
            if stripped.startswith(fence) and stripped.strip(fence[0]) == "":
                blocks.append(("\n".join(code), True))
                code, fence = [], None
            continue
        opening = _FENCE.match(line)
        if opening:
            end_prose()
            fence = opening.group(1)
            code = [line]
            continue
        heading = _HEADING.match(line) if headings else None
        if heading:
            end_prose()
            sections.append((path, blocks))
            level = len(heading.group(1))
            path = [*path[: level - 1], heading.group(2).strip()]
            blocks = []
            continue
        prose.append(line)
    if code:  # an unclosed fence: keep what there is
        blocks.append(("\n".join(code), True))
    end_prose()
    sections.append((path, blocks))
    return [(p, b) for p, b in sections if b]


def _code_sections(text: str) -> list[Section]:
    """Split source code at top-level definitions; each section is titled by its first line."""
    sections: list[Section] = []
    title = ""
    lines: list[str] = []
    for line in text.splitlines():
        if _CODE_START.match(line) and lines:
            sections.append(([title] if title else [], [(b, True) for b in _code_blocks(lines)]))
            lines = []
        if _CODE_START.match(line):
            title = line.strip().rstrip(":{").strip()[:80]
        lines.append(line)
    if lines:
        sections.append(([title] if title else [], [(b, True) for b in _code_blocks(lines)]))
    return [(p, b) for p, b in sections if b]


def _code_blocks(lines: list[str]) -> list[str]:
    text = "\n".join(lines)
    return [b for b in _BLANK.split(text) if b.strip()]


# -- splitting what is too long ------------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    """Sentences, with their white space; a list marker stays with its item, and inline code
    (`a: b`) is never cut."""
    out: list[str] = []
    for part in _SENTENCE_END.split(text):
        if not part:
            continue
        if out and (_LIST_MARKER.fullmatch(out[-1]) or out[-1].count("`") % 2):
            out[-1] += part
        else:
            out.append(part)
    return out


def blocks(text: str) -> list[tuple[str, bool]]:
    """Markdown text as (paragraph or code block, is_code) in order, headings left out: what a
    passage says, for quoting it."""
    return [block for _, found in _markdown_sections(text) for block in found]


def _split_long(text: str, max_tokens: int) -> list[str]:
    """Cut text with no usable boundary into pieces of about ``max_tokens`` tokens."""
    pieces = []
    while text:
        cut = max(1, int(len(text) * max_tokens / max(estimate_tokens(text), 1)))
        if cut >= len(text):
            pieces.append(text)
            break
        space = text.rfind(" ", cut // 2, cut)
        if space > 0:
            cut = space + 1
        pieces.append(text[:cut])
        text = text[cut:]
    return pieces


def _split_block(block: Block, max_tokens: int) -> list[Block]:
    text, is_code = block
    if estimate_tokens(text) <= max_tokens:
        return [block]
    if is_code:
        lines = text.splitlines()
        opening = lines[0] if _FENCE.match(lines[0]) else ""
        closing = lines[-1] if opening and len(lines) > 1 and _FENCE.match(lines[-1]) else ""
        body = lines[1 if opening else 0 : -1 if closing else None]
        budget = max_tokens - estimate_tokens(opening + closing)
        pieces: list[Block] = []
        current: list[str] = []
        size = 0
        for line in body:
            for part in _split_long(line, budget) if estimate_tokens(line) > budget else [line]:
                tokens = estimate_tokens(part)
                if current and size + tokens > budget:
                    pieces.append(("\n".join(filter(None, [opening, *current, closing])), True))
                    current, size = [], 0
                current.append(part)
                size += tokens
        if current:
            pieces.append(("\n".join(filter(None, [opening, *current, closing])), True))
        return pieces
    pieces = []
    current_text = ""
    for sentence in split_sentences(text):
        parts = [sentence]
        if estimate_tokens(sentence) > max_tokens:
            parts = _split_long(sentence, max_tokens)
        for part in parts:
            if current_text and estimate_tokens(current_text + part) > max_tokens:
                pieces.append((current_text.strip(), False))
                current_text = ""
            current_text += part
    if current_text.strip():
        pieces.append((current_text.strip(), False))
    return pieces


def _overlap_tail(blocks: list[Block], overlap_tokens: int) -> str:
    """The last sentences of the last prose block, about ``overlap_tokens`` tokens of them."""
    if overlap_tokens <= 0 or not blocks or blocks[-1][1]:
        return ""
    tail = ""
    for sentence in reversed(split_sentences(blocks[-1][0])):
        if estimate_tokens(sentence + tail) > overlap_tokens:
            break
        tail = sentence + tail
    return tail.strip()


# -- packing -------------------------------------------------------------------------------------


def _common_prefix(a: list[str], b: list[str]) -> list[str]:
    out = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        out.append(x)
    return out


def _pack(
    sections: list[Section],
    max_tokens: int,
    overlap_tokens: int,
    merge_below: int,
    *,
    headings: bool = True,
) -> list[TextChunk]:
    chunks: list[TextChunk] = []
    buffer: list[Block] = []
    # Which section and block each buffered piece was cut from (None: a heading): pieces of one
    # paragraph are joined as one paragraph again, without a break where it was cut.
    origins: list[tuple[int, int] | None] = []
    size = 0
    title: list[str] = []

    def flush() -> None:
        parts: list[str] = []
        for i, (text, is_code) in enumerate(buffer):
            if i:
                same = not is_code and origins[i] is not None and origins[i] == origins[i - 1]
                parts.append("\n" if same else "\n\n")
            parts.append(text)
        text = "".join(parts).strip()
        if text:
            chunks.append(TextChunk(text=text, title=" > ".join(title)))

    for number, (path, blocks) in enumerate(sections):
        # Prose is cut a little shorter than the limit, leaving room for the overlap.
        pieces = [
            (piece, (number, origin))
            for origin, block in enumerate(blocks)
            for piece in _split_block(
                block, max_tokens if block[1] else max_tokens - overlap_tokens
            )
        ]
        section_tokens = sum(estimate_tokens(text) for (text, _), _ in pieces)
        heading = ("#" * len(path) + " " + path[-1]) if path and headings else ""
        if buffer and (
            size >= merge_below or size + estimate_tokens(heading) + section_tokens > max_tokens
        ):
            flush()
            buffer, origins, size = [], [], 0
        if buffer:
            # A small section shares the chunk of the one before: keep its heading in the text.
            if heading:
                buffer.append((heading, False))
                origins.append(None)
                size += estimate_tokens(heading)
            title = _common_prefix(title, path)
        else:
            title = path
        for piece, origin in pieces:
            tokens = estimate_tokens(piece[0])
            if buffer and size + tokens > max_tokens:
                flush()
                tail = _overlap_tail(buffer, overlap_tokens)
                if estimate_tokens(tail) + tokens > max_tokens:
                    tail = ""
                # The overlap is the end of the last piece: of its paragraph, too.
                buffer, origins = ([(tail, False)], [origins[-1]]) if tail else ([], [])
                size = estimate_tokens(tail) if tail else 0
                title = path
            buffer.append(piece)
            origins.append(origin)
            size += tokens
    flush()
    return chunks
