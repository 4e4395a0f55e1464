"""The admin's good and bad example questions, read from the files named in bot.yaml."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ExamplesError(Exception):
    """An example file is missing or unreadable; the message names the file and the fix."""


def read_questions(path: Path) -> list[str]:
    """A JSON list of strings, JSON Lines of ``{"query": ...}`` (or strings), or plain text.

    Blank entries are skipped; anything else that is not a question string is an error that
    names the file and the line, so a bad edit never silently drops examples.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExamplesError(f"{path}: example file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExamplesError(f"{path}: cannot read: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExamplesError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
        items = [(i + 1, item) for i, item in enumerate(data)]
        where = "item"
    elif stripped.startswith("{") or stripped.startswith('"'):
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ExamplesError(f"{path}: line {number}: invalid JSON: {exc.msg}") from None
        where = "line"
    else:
        items = [(n, line) for n, line in enumerate(text.splitlines(), 1)]
        where = "line"
    questions = []
    for number, item in items:
        value = item.get("query") if isinstance(item, dict) else item
        if not isinstance(value, str):
            raise ExamplesError(
                f'{path}: {where} {number}: expected a question string or {{"query": ...}}'
            )
        if value.strip():
            questions.append(value.strip())
    return questions


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
