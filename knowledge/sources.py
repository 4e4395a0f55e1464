"""Find the files the `knowledge.sources` of bot.yaml point at.

Globs are matched against the path relative to the source folder: ``**`` spans folders, ``*``
stays within one, and a pattern without ``/`` matches the file name in any folder (``*.md``).
Excluded folders are pruned while walking, so ``node_modules`` or ``.git`` cost nothing.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

from knowledge.loaders import kind_of
from knowledge.settings import SourceSettings


class SourceError(Exception):
    """A configured source cannot be read (a bot.yaml problem, exit code 2 in the CLI)."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path
    source: str  # how citations name it: the source folder's name, then the relative path
    collection: str
    size: int


@dataclass(frozen=True, slots=True)
class Skipped:
    source: str
    reason: str
    collection: str = ""


@dataclass(slots=True)
class Scan:
    files: list[SourceFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    unsupported: Counter[str] = field(default_factory=Counter)


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    if "/" not in pattern.rstrip("/"):
        pattern = "**/" + pattern
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _matches(patterns: list[str], path: str) -> bool:
    return any(glob_regex(p).fullmatch(path) for p in patterns)


def scan(sources: list[SourceSettings], max_file_mb: float) -> Scan:
    """Every file to index, plus the ones left out and why; raises SourceError."""
    result = Scan()
    for index, settings in enumerate(sources):
        root = settings.path
        where = f"knowledge.sources[{index}].path"
        if not root.exists():
            raise SourceError(f"{where}: {root} does not exist")
        if root.is_file():
            _add(result, root, root.name, settings, max_file_mb)
            continue
        if not root.is_dir():
            raise SourceError(f"{where}: {root} is neither a folder nor a file")
        if not os.access(root, os.R_OK | os.X_OK):
            raise SourceError(f"{where}: {root} is not readable")
        for folder, dirs, files in os.walk(root):
            relative_folder = PurePosixPath(Path(folder).relative_to(root).as_posix())
            kept = []
            for name in sorted(dirs):
                rel = (relative_folder / name).as_posix()
                if not _matches(settings.exclude, rel + "/"):
                    kept.append(name)
            dirs[:] = kept
            for name in sorted(files):
                rel = (relative_folder / name).as_posix()
                if _matches(settings.exclude, rel) or not _matches(settings.include, rel):
                    continue
                _add(result, Path(folder) / name, f"{root.name}/{rel}", settings, max_file_mb)
    return result


def _add(
    result: Scan, path: Path, source: str, settings: SourceSettings, max_file_mb: float
) -> None:
    if kind_of(path) is None:
        result.unsupported[path.suffix.lower() or path.name] += 1
        return
    try:
        size = path.stat().st_size
    except OSError as exc:
        reason = f"cannot read: {exc.strerror or exc}"
        result.skipped.append(Skipped(source, reason, settings.collection))
        return
    if size > max_file_mb * 2**20:
        result.skipped.append(
            Skipped(
                source,
                f"too large ({size / 2**20:.1f} MB > knowledge.max_file_mb {max_file_mb:g} MB)",
                settings.collection,
            )
        )
        return
    result.files.append(SourceFile(path, source, settings.collection, size))
