"""A reply as the messages a platform will take: the answer split within the platform's limit,
the mentions on the first message and the numbered references on the last, so ``[n]`` in the
text keeps its meaning, and a citation is never cut in two."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.common.split import Measure, split_text
from bot.message import Reference, Reply
from knowledge.text import has_cjk


def references_heading(text: str) -> str:
    """The heading above the references, in the answer's language."""
    return "参考资料" if has_cjk(text) else "References"


def reference_line(number: int, ref: Reference) -> str:
    return f"[{number}] {ref.label()}"


@dataclass(frozen=True, slots=True)
class Part:
    """One message to send: a slice of the answer, with the mentions (first part) and the
    references (last part)."""

    text: str
    references: tuple[Reference, ...] = ()
    mentions: tuple[str, ...] = ()
    label: str = field(default="References", compare=False)
    first_number: int = 1  # of the references here, so [n] in the answer keeps its meaning

    def numbered(self) -> list[tuple[int, Reference]]:
        return list(enumerate(self.references, self.first_number))

    def size(self, measure: Measure = len) -> int:
        lines = [reference_line(i, ref) for i, ref in self.numbered()]
        return measure(self.text) + sum(measure(line) for line in lines)


def plan_parts(reply: Reply, limit: int, measure: Measure = len, overhead: int = 0) -> list[Part]:
    """The reply as parts of at most ``limit`` each (references count too); ``overhead`` is
    what the platform's format adds to a message (mentions, markup)."""
    limit = max(limit - overhead, 16)
    label = references_heading(reply.text)
    refs = reply.references
    refs_size = Part("", refs).size(measure) + measure(label) + 2
    pieces = split_text(reply.text.strip(), limit, measure)
    parts = [Part(piece, label=label) for piece in pieces]
    if refs:
        last = parts[-1]
        if measure(last.text) + refs_size <= limit:
            parts[-1] = Part(last.text, refs, label=label)
        else:
            parts.append(Part("", refs, label=label))
    if reply.mentions:
        first = parts[0]
        parts[0] = Part(first.text, first.references, reply.mentions, label=label)
    return parts


def split_part(part: Part, measure: Measure = len) -> list[Part]:
    """Halve a part the platform refused as too long; mentions stay first, references last."""
    if len(part.text) < 2:
        if not part.references or len(part.references) < 2:
            return [part]
        half = len(part.references) // 2
        return [
            Part(part.text, part.references[:half], part.mentions, part.label, part.first_number),
            Part("", part.references[half:], (), part.label, part.first_number + half),
        ]
    pieces = split_text(part.text, max(measure(part.text) // 2 + 1, 1), measure)
    if len(pieces) == 1:
        middle = len(part.text) // 2
        pieces = [part.text[:middle], part.text[middle:]]
    result = [Part(piece, label=part.label) for piece in pieces]
    result[0] = Part(result[0].text, (), part.mentions, part.label)
    last = result[-1]
    result[-1] = Part(last.text, part.references, last.mentions, part.label, part.first_number)
    return result


def render_markdown(part: Part) -> str:
    """Markdown for platforms that take it (DingTalk, WeCom): the text, then the references,
    web pages as links."""
    lines = [part.text] if part.text else []
    if part.references:
        lines += ["", f"**{part.label}**"]
        for number, ref in part.numbered():
            if ref.url:
                lines.append(f"[{number}] [{ref.title or ref.url}]({ref.url})")
            else:
                lines.append(reference_line(number, ref))
    return "\n".join(lines).strip()


def render_plain(part: Part) -> str:
    """Plain text: the text, then the references with their URLs written out."""
    lines = [part.text] if part.text else []
    if part.references:
        lines += ["", f"{part.label}:"]
        lines += [f"[{number}] {ref.plain()}" for number, ref in part.numbered()]
    return "\n".join(lines).strip()
