"""Examples learned from a group's feedback: one JSON file per group beside the gate,
``<work_dir>/knowledge/gate/learned/<group>.json`` = ``{"conversation_id", "good", "bad"}``.

The daemon's learning job writes them from the confirmed feedback in its database (the
knowledge package never reads the bot's database); the gates read them as examples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.rejection.examples import Examples
from knowledge.rejection.files import LEARNED_DIR, gate_dir

log = logging.getLogger(__name__)


@dataclass
class Learned:
    conversation_id: str
    good: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    @property
    def examples(self) -> Examples:
        return Examples.from_lists(self.good, self.bad)

    def __len__(self) -> int:
        return len(self.good) + len(self.bad)


def slug(conversation_id: str) -> str:
    """A file name for a group id: readable where it can be, unique by its hash."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", conversation_id)[:60].strip(".")
    digest = hashlib.sha256(conversation_id.encode()).hexdigest()[:10]
    return f"{readable}-{digest}"


def learned_dir(work_dir: Path) -> Path:
    return gate_dir(work_dir) / LEARNED_DIR


def read_learned(work_dir: Path) -> dict[str, Learned]:
    """Every group's learned examples, by group id."""
    found: dict[str, Learned] = {}
    directory = learned_dir(work_dir)
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            learned = Learned(
                str(data["conversation_id"]),
                [str(q) for q in data.get("good", [])],
                [str(q) for q in data.get("bad", [])],
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: cannot read learned examples (%s): skipped", path, exc)
            continue
        found[learned.conversation_id] = learned
    return found


def write_learned(work_dir: Path, learned: dict[str, Learned]) -> bool:
    """Write every group's learned examples (and remove the files of groups with none left);
    True when anything changed. Each file is written beside and renamed into place."""
    directory = learned_dir(work_dir)
    directory.mkdir(parents=True, exist_ok=True)
    changed = False
    wanted = {slug(cid): item for cid, item in learned.items() if len(item)}
    for path in directory.glob("*.json"):
        if path.stem not in wanted:
            path.unlink(missing_ok=True)
            changed = True
    for name, item in wanted.items():
        path = directory / f"{name}.json"
        text = json.dumps(
            {"conversation_id": item.conversation_id, "good": item.good, "bad": item.bad},
            ensure_ascii=False,
            indent=1,
        )
        try:
            if path.read_text(encoding="utf-8") == text:
                continue
        except FileNotFoundError:
            pass
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        changed = True
    return changed
