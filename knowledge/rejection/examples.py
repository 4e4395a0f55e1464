"""The admin's good and bad example questions, read from the files named in bot.yaml."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np


class ExamplesError(Exception):
    """An example file is missing or unreadable; the message names the file and the fix."""


Format = Literal["json", "jsonl", "text"]


@dataclass(frozen=True)
class _Entry:
    question: str
    item: Any  # as read: a string, or a JSON object with other keys besides "query"


def _read(path: Path) -> tuple[Format, list[_Entry]]:
    """The file's format and its non-blank entries, or an ExamplesError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExamplesError(f"{path}: example file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExamplesError(f"{path}: cannot read: {exc}") from None
    stripped = text.lstrip()
    form: Format
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExamplesError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
        items = [(i + 1, item) for i, item in enumerate(data)]
        where, form = "item", "json"
    elif stripped.startswith("{") or stripped.startswith('"'):
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ExamplesError(f"{path}: line {number}: invalid JSON: {exc.msg}") from None
        where, form = "line", "jsonl"
    else:
        items = [(n, line) for n, line in enumerate(text.splitlines(), 1)]
        where, form = "line", "text"
    entries = []
    for number, item in items:
        value = item.get("query") if isinstance(item, dict) else item
        if not isinstance(value, str):
            raise ExamplesError(
                f'{path}: {where} {number}: expected a question string or {{"query": ...}}'
            )
        if value.strip():
            entries.append(_Entry(value.strip(), item))
    return form, entries


def read_questions(path: Path) -> list[str]:
    """A JSON list of strings, JSON Lines of ``{"query": ...}`` (or strings), or plain text.

    Blank entries are skipped; anything else that is not a question string is an error that
    names the file and the line, so a bad edit never silently drops examples.
    """
    return [entry.question for entry in _read(path)[1]]


def write_questions(path: Path, questions: list[str]) -> None:
    """Replace the questions in an example file, keeping its format (a new file's follows its
    suffix: .json, .jsonl, else plain text) and, in JSON, the other keys an entry carried.

    Written beside and renamed into place, so the daemon's check never reads half a file.
    """
    form: Format = "text"
    entries: list[_Entry] = []
    if path.exists():
        form, entries = _read(path)
    elif path.suffix in (".json", ".jsonl"):
        form = "json" if path.suffix == ".json" else "jsonl"
    kept = {entry.question: entry.item for entry in entries}

    def item(question: str) -> Any:
        old = kept.get(question)
        if isinstance(old, dict):
            return old
        return {"query": question} if form == "jsonl" else question

    if form == "json":
        text = json.dumps([item(q) for q in questions], ensure_ascii=False, indent=1) + "\n"
    elif form == "jsonl":
        text = "".join(json.dumps(item(q), ensure_ascii=False) + "\n" for q in questions)
    else:
        if any("\n" in q for q in questions):
            raise ExamplesError(
                f"{path}: a plain-text example file holds one question a line; use a .json "
                "file for questions that span lines"
            )
        text = "".join(q + "\n" for q in questions)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


@dataclass(frozen=True)
class Examples:
    queries: list[str]
    labels: np.ndarray  # 1 = a real question the bot should answer, 0 = chitchat

    @classmethod
    def from_lists(cls, good: list[str], bad: list[str]) -> Examples:
        return cls(list(good) + list(bad), np.array([1] * len(good) + [0] * len(bad)))

    @classmethod
    def load(cls, good_path: Path | None, bad_path: Path | None) -> Examples:
        if good_path is None or bad_path is None:
            raise ExamplesError(
                "rejection.good_questions and rejection.bad_questions must both name files"
            )
        return cls.from_lists(read_questions(good_path), read_questions(bad_path))

    @classmethod
    def combine(cls, *parts: Examples) -> Examples:
        """All the parts' examples; a question in several keeps the label of the last part
        that has it (learned corrections win over the example files)."""
        labels: dict[str, int] = {}
        for part in parts:
            for query, label in zip(part.queries, part.labels, strict=True):
                labels.pop(query, None)
                labels[query] = int(label)
        return cls(list(labels), np.array(list(labels.values()), dtype=int))

    def questions(self, label: int) -> list[str]:
        """The good (1) or bad (0) questions, in their order."""
        return [q for q, value in zip(self.queries, self.labels, strict=True) if value == label]

    @property
    def good(self) -> int:
        return int((self.labels == 1).sum())

    @property
    def bad(self) -> int:
        return int((self.labels == 0).sum())

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for query, label in zip(self.queries, self.labels, strict=True):
            digest.update(f"{int(label)}\t{query}\n".encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ExampleFiles:
    """The global gate's examples: the two files named in bot.yaml's ``rejection:`` section,
    read and written in their own formats."""

    good_path: Path | None
    bad_path: Path | None

    def load(self) -> Examples:
        return Examples.load(self.good_path, self.bad_path)

    def save(self, examples: Examples) -> None:
        if self.good_path is None or self.bad_path is None:
            raise ExamplesError(
                "rejection.good_questions and rejection.bad_questions must both name files"
            )
        write_questions(self.good_path, examples.questions(1))
        write_questions(self.bad_path, examples.questions(0))
