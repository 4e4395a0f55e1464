"""Answer without a generative model: quote the sentences of the best passages that match the
question most, with citations.

A tiny chat model (the bundled SmolLM2-135M) writes fluent nonsense; quoting the documentation
is always right about what it says. Placed before ``generate``, this middleware answers when no
capable model is configured (``llm.capable``, or a local model of fewer than a billion
parameters: ``bot.llm.capability``); ``generate`` then leaves the answer alone. With a capable
model it passes the message on untouched (``when: always`` quotes anyway).

From the best passage, and a second one from another document when the ranker thinks nearly as
well of it and it does not repeat the first, it keeps the sentences (and code blocks) holding
most of the question's terms, weighted by how rare they are in the knowledge base (a translated
term counts: an English page answers a Chinese question), in their order, within
``max_chars``. Search ranks a page's chunks by how well each matches as a whole, so the chunk
it hands over is not always the one that says it: the page's next-best chunks
(``Chunk.alternatives``) are looked at too, and the most relevant run among them is quoted,
the reference naming its section. A passage reads on into the rest of its section when the
index cut the section there (``KnowledgeBase.read_on``): the sentence that answers often
follows the cut. A sentence that introduces a code block ("Install it with pip:") brings the
code along, cut at a line when it does not fit whole. Passages keep the ranker's order
(``retrieve`` has already swapped in the page in the question's language where the corpus has
one). The quotes carry [n] markers, so ``cite`` turns them into references.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.context import Chunk, TurnContext
from bot.llm.capability import Capability, capability
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext
from knowledge.bm25 import Tokenizer
from knowledge.chunking import blocks
from knowledge.text import overlap

INTRO = {"zh": "文档中的相关内容 [{n}]：", "en": "From the documentation [{n}]:"}
MORE = {"zh": "另见 [{n}]：", "en": "See also [{n}]:"}
# How this middleware's answers begin (a page showing one is not quoted as an answer).
OWN_ANSWER = re.compile(
    "|".join(re.escape(text).replace(re.escape("{n}"), r"\d+") for text in INTRO.values())
)
GAP = "…"
# A further passage is quoted only with at least this many characters left for it.
MIN_SECOND_CHARS = 120
# Words that ask rather than say what is asked about (English stemmed by the tokenizer).
QUESTION_WORDS = (
    "how what why which where when who whom whose do does did can could should would will "
    "anyone anybody someone somebody i me my we you please thanks hi hello guys "
    "啥 咋 咋办 怎么办 为啥 哪些 哪里 哪儿 有没有 是不是 能不能 可不可以 会不会 多少 吗 呢 嘛 么 "
    "请教 求助 大佬 各位 谢谢"
)
# A further passage whose words are this much in the quotes already adds nothing: a copy of
# the page (a translation, another repository's FAQ with the same entry).
REPEATED_SHARE = 0.75
# Code introduced by a quoted sentence is cut to fit when at least this much room is left.
MIN_CODE_CHARS = 100
# Further passages less relevant than this share of the most relevant one are left out.
PASSAGE_SHARE = 0.8

Unit = tuple[str, bool]  # (a sentence, or a code block or table kept verbatim; verbatim)
# A line that starts a list item or a table row, not the continuation of a wrapped sentence.
_ITEM = re.compile(r"^([-*+]|\d{1,3}[.)])\s")
_MARKER_ONLY = re.compile(r"^([-*+]|\d{1,3}[.)])$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
# How a piece that is the tail of a sentence begins: a lower-case word or closing punctuation.
_FRAGMENT = re.compile(r"^[a-z,;:)\]}]")
# Chinese characters and punctuation: lines wrapped between two of them join without a space.
_WIDE = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
# Where a quoted sentence ends: after Chinese end punctuation, or after . ! ? and a space before
# what starts a sentence (not at a colon or semicolon: those run on into what they introduce).
_SENTENCE_END = re.compile(r"(?<=[。！？])|(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[*_\u4e00-\u9fff])")


class ExtractOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    when: Literal["auto", "always"] = Field(
        "auto", description="auto: only without a capable chat model; always: quote anyway"
    )
    max_chars: int = Field(600, ge=80, le=4000, description="the quoted text's length limit")
    max_passages: int = Field(2, ge=1, le=5, description="passages (documents) quoted at most")
    min_relative_score: float = Field(
        0.5, ge=0, le=1, description="a further passage's score, as a share of the best one's"
    )
    min_relevance: float = Field(
        0.3,
        ge=0,
        le=1,
        description="the best sentence must hold this weighted share of the question's terms; "
        "else stay silent (the passages do not say it)",
    )
    sure_score: float = Field(
        0.7,
        ge=0,
        le=1,
        description="the learned ranker's probability that a passage's page answers, from which "
        "min_relevance_when_sure applies to it instead",
    )
    min_relevance_when_sure: float = Field(
        0.15,
        ge=0,
        le=1,
        description="min_relevance for a passage the ranker is sure of (a question in other "
        "words than its page's)",
    )
    unsure_score: float = Field(
        0.25,
        ge=0,
        le=1,
        description="stay silent when the learned ranker's probability that the first "
        "passage's page answers is below this (the pages most likely do not say it)",
    )


def doubted(chunk: Chunk, options: ExtractOptions) -> bool:
    """The learned ranker doubts that the passage's page answers at all (a question the pages
    do not answer still shares words with some page: quoting that is noise)."""
    sure = chunk.scores.get("ranker")
    return sure is not None and sure < options.unsure_score


def first_floor(chunk: Chunk, options: ExtractOptions) -> float:
    """The share of the question's terms a first passage must hold: less when the learned
    ranker is sure its page answers (the question says it in other words than the page), more
    than all of them when it doubts it."""
    if doubted(chunk, options):
        return math.inf
    if chunk.scores.get("ranker", 0.0) >= options.sure_score:
        return min(options.min_relevance, options.min_relevance_when_sure)
    return options.min_relevance


def units(text: str) -> list[Unit]:
    """A passage as quotable pieces in order: its prose sentence by sentence (lines wrapped in
    the source joined again), list items one by one, tables and code blocks whole; headings
    are left out (the reference names the section)."""
    out: list[Unit] = []
    for block, is_code in blocks(text):
        if is_code:
            out.append((block.strip("\n"), True))
            continue
        items: list[str] = []
        for line in block.splitlines():
            line = line.strip()
            if not line:
                continue
            table = line.startswith("|")
            if items and table and items[-1].startswith("|"):
                items[-1] += "\n" + line
            elif items and not table and not _ITEM.match(line) and not items[-1].startswith("|"):
                joiner = "" if _WIDE.match(line) and _WIDE.match(items[-1][-1]) else " "
                items[-1] += joiner + line
            else:
                items.append(line)
        for item in items:
            if item.startswith("|"):
                out.append((item, True))
            else:
                sentences: list[str] = []
                for sentence in _SENTENCE_END.split(item):
                    sentence = sentence.strip()
                    if sentences and _MARKER_ONLY.match(sentences[-1]):
                        sentences[-1] += " " + sentence
                    elif sentence:
                        sentences.append(sentence)
                out.extend((sentence, False) for sentence in sentences)
    return out


Weights = list[tuple[set[str], float]]  # the question's terms (with translations), weighted


def relevance(terms: set[str], weights: Weights) -> float:
    """The weighted share of the question's terms (or their translations) among ``terms``."""
    total = sum(weight for _, weight in weights)
    if total <= 0:
        return 0.0
    return sum(weight for alternatives, weight in weights if alternatives & terms) / total


def window(pieces: list[Unit], terms: list[set[str]], weights: Weights, budget: int) -> list[int]:
    """The run of consecutive pieces, as long as the budget allows, that holds the most of
    the question's terms; the earliest of equals (a section that fits is quoted whole). A run
    starts at the passage's beginning or at a piece that holds a term of the question, so it
    carries on into what that piece introduces."""
    best: list[int] = []
    best_score = -1.0
    # A passage that begins mid-sentence (the chunker repeats the end of the chunk before, cut at
    # a colon) is quoted from its first whole sentence.
    first = 1 if len(pieces) > 1 and _FRAGMENT.match(pieces[0][0]) and not pieces[0][1] else 0
    starts = [
        first,
        *(i for i in range(first + 1, len(pieces)) if relevance(terms[i], weights) > 0),
    ]
    for start in starts:
        taken: list[int] = []
        used = 0
        found: set[str] = set()
        for i in range(start, len(pieces)):
            size = len(pieces[i][0])
            if taken and used + size > budget:
                # Code that the last sentence introduces ("Run it like this:") comes along,
                # cut to the room left (``quote``): its first lines usually hold the answer.
                if introduces(pieces[taken[-1]], pieces[i]) and budget - used >= MIN_CODE_CHARS:
                    taken.append(i)
                    found |= terms[i]
                break
            taken.append(i)
            used += size
            found |= terms[i]
        score = relevance(found, weights)
        if score > best_score:
            best, best_score = taken, score
    return best


def introduces(sentence: Unit, code: Unit) -> bool:
    """A prose sentence that ends with a colon, followed by a code block or table."""
    return not sentence[1] and code[1] and sentence[0].rstrip().endswith((":", "："))


def shorten(text: str, is_code: bool, limit: int) -> str:
    """Cut a piece that alone exceeds the limit: code and tables at a line, prose at a
    character."""
    if len(text) <= limit:
        return text
    if not is_code:
        return text[: max(limit - 1, 1)].rstrip() + GAP
    lines = text.splitlines()
    fence = _FENCE.match(lines[0]) if lines else None
    body = lines[1:-1] if fence else lines
    kept: list[str] = []
    size = 2 * len(fence.group(1)) if fence else 0
    for line in body:
        if kept and size + len(line) + 1 > limit:
            break
        kept.append(line[:limit])
        size += len(line) + 1
    if fence:
        return "\n".join([lines[0], *kept, GAP, fence.group(1)])
    return "\n".join([*kept, GAP])


def quote(pieces: list[Unit], picked: list[int], limit: int) -> str:
    """The picked run of pieces as a chat quote: prose as "> " lines, code and tables as they
    are, and a "> …" where the passage goes on before or after."""
    lines = []
    room = limit
    for i in picked:
        # Only the last piece of a run can be longer than the room left (see ``window``).
        text, is_code = pieces[i]
        text = shorten(text, is_code, max(room, MIN_CODE_CHARS))
        room -= len(text)
        lines.append(text if is_code else f"> {' '.join(text.split())}")
    if picked and picked[0] > 0:
        lines.insert(0, f"> {GAP}")
    if picked and picked[-1] < len(pieces) - 1:
        lines.append(f"> {GAP}")
    return "\n".join(lines)


class Extract(BaseMiddleware[ExtractOptions]):
    name = "extract"
    Options = ExtractOptions
    _capability: Capability | None = None
    _tokenizer: Tokenizer | None = None
    _asking: set[str] | None = None

    async def warm_up(self) -> None:
        # Reads the model file's header (not its weights) once.
        self._capability = await asyncio.to_thread(capability, self.services.config.llm)

    @property
    def model(self) -> Capability:
        if self._capability is None:
            self._capability = capability(self.services.config.llm)
        return self._capability

    def weigh(self, question: str) -> tuple[Tokenizer, list[tuple[set[str], float]]]:
        """The tokenizer, and the question's terms with their weights (their rarity in the
        knowledge base, when there is one), less the words that make it a question: rare in
        the documentation, they would weigh most, yet no answer says them."""
        kb = self.services.knowledge
        if kb is not None:
            tokenizer, weights = kb.tokenizer, kb.term_weights(question)
        else:
            if self._tokenizer is None:
                self._tokenizer = Tokenizer()
            tokenizer = self._tokenizer
            weights = [({t}, 1.0) for t in dict.fromkeys(tokenizer(question))]
        if self._asking is None:
            self._asking = set(tokenizer(QUESTION_WORDS))
        asking = self._asking
        return tokenizer, [(terms, w) for terms, w in weights if not terms <= asking]

    def pieces(self, chunk: Chunk, chars: int) -> list[Unit]:
        """A passage's quotable pieces, read on into the rest of its section when the knowledge
        base split the section there: the sentence that answers often comes just after the cut."""
        kb = self.services.knowledge
        more = kb.read_on(chunk.chunk_id, chars) if kb is not None and chunk.chunk_id else ""
        # A page that shows an answer of this bot (its own README) is no answer.
        return [p for p in units(chunk.text) + units(more) if not OWN_ANSWER.search(p[0])]

    def best_run(
        self, chunk: Chunk, tokenize: Tokenizer, weights: Weights, budget: int
    ) -> tuple[Chunk, list[Unit], list[set[str]], list[int], float]:
        """The passage's most relevant run of pieces, looked for in the ranked chunk and in its
        document's next-best chunks (the search ranks a chunk by how well it matches as a
        whole, the answer is often in the one after): the chunk, its pieces and their terms,
        the run, and its relevance (the heading counts: it says what the run is about). The
        ranked chunk wins a tie."""
        best: tuple[Chunk, list[Unit], list[set[str]], list[int], float] | None = None
        for option in [chunk, *self.alternatives(chunk)]:
            pieces = self.pieces(option, budget)
            terms = [set(tokenize(text)) for text, _ in pieces]
            picked = window(pieces, terms, weights, budget)
            found = set(tokenize(option.title)).union(*(terms[i] for i in picked))
            score = relevance(found, weights)
            if best is None or score > best[-1]:
                best = (option, pieces, terms, picked, score)
        assert best is not None
        return best

    def alternatives(self, chunk: Chunk) -> list[Chunk]:
        """The next-best chunks of the passage's document, as passages."""
        kb = self.services.knowledge
        if kb is None or not chunk.alternatives:
            return []
        rows = kb.manifest.chunks(chunk.alternatives)
        return [
            replace(chunk, text=row.text, title=row.title, chunk_id=row.id, alternatives=[])
            for row in (rows.get(i) for i in chunk.alternatives)
            if row is not None
        ]

    def passages(self, ctx: TurnContext, options: ExtractOptions) -> list[tuple[int, Chunk]]:
        """The passages to quote, with their index in ``ctx.chunks``: the best, and further
        ones from other documents that score nearly as well, in the ranker's order (it knows
        the question's language, and ``retrieve`` has swapped in the page in that language
        where the corpus has one: a page in the other language that answers beats one in the
        question's language that does not)."""
        best = max(chunk.score for chunk in ctx.chunks)
        chosen: list[tuple[int, Chunk]] = []
        for index, chunk in enumerate(ctx.chunks):
            if len(chosen) == options.max_passages:
                break
            if chunk.source in {c.source for _, c in chosen}:
                continue
            if chosen and chunk.score < options.min_relative_score * best:
                continue
            chosen.append((index, chunk))
        return chosen

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        options = self.options_for(ctx)
        model = self.model
        if options.when == "auto" and model.capable:
            ctx.record(skipped="the chat model answers", why=model.why)
            return await call_next(ctx)
        if not ctx.chunks:
            return ctx.ignore("no-knowledge", why="no passage to quote", model=model.why)
        chosen = self.passages(ctx, options)
        if all(doubted(chunk, options) for _, chunk in chosen):
            return ctx.ignore(
                "no-knowledge",
                score=round(chosen[0][1].scores["ranker"], 3),
                threshold=options.unsure_score,
                why="the learned ranker doubts that the best page answers the question "
                "(its probability is the score)",
                model=model.why,
            )
        tokenize, weights = await asyncio.to_thread(self.weigh, ctx.question)
        budget = options.max_chars
        # Per passage: its pieces, the run of them to quote, and how relevant that is.
        scored = await asyncio.to_thread(
            lambda: [
                (index, *self.best_run(chunk, tokenize, weights, budget))
                for index, chunk in chosen
            ]
        )
        best = max((score for *_, score in scored), default=0.0)
        # The ranker's first passage needs only to say enough of the question; a further one
        # must also be nearly as relevant as the most relevant passage.
        floor = max(options.min_relevance, PASSAGE_SHARE * best)
        language = "zh" if ctx.language == "zh" else "en"
        parts: list[str] = []
        quoted = ""
        used: list[dict[str, object]] = []
        for index, chunk, pieces, terms, picked, score in scored:
            if not picked or score < (floor if parts else first_floor(chunk, options)):
                continue
            if parts and budget < MIN_SECOND_CHARS:
                break
            if parts:
                picked = window(pieces, terms, weights, budget)
            text = quote(pieces, picked, budget)
            if parts and overlap(text, quoted) >= REPEATED_SHARE:
                continue
            quoted += "\n" + text
            intro = (MORE if parts else INTRO)[language].format(n=index + 1)
            parts.append(f"{intro}\n{text}")
            budget -= len(text)
            # The reference names the section quoted, and later steps (the guard's check of
            # the reply's links, cite) see the text it was quoted from, read-on included.
            ctx.chunks[index] = replace(chunk, text="\n\n".join(text for text, _ in pieces))
            used.append(
                {
                    "source": chunk.source,
                    "title": chunk.title,
                    "pieces": len(picked),
                    "relevance": round(score, 3),
                }
            )
        if not parts:
            return ctx.ignore(
                "no-knowledge",
                score=best,
                threshold=options.min_relevance,
                why="no passage holds enough of the question's terms to quote",
                model=model.why,
            )
        ctx.answer = "\n\n".join(parts)
        ctx.record(model=model.why, quoted=used, chars=len(ctx.answer))
        return await call_next(ctx)
