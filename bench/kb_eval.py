"""Which retrieval ranks the answering document highest: dense, BM25, or a fusion of both?

    nice .venv/bin/python bench/kb_eval.py [--work /tmp/kb-bench-work]

Uses the index bench/kb_build.py left in --work (builds one if there is none) and the
hand-written questions in bench/kb_questions.jsonl (Chinese and English, each with the corpus
documents that answer it). A question is a hit@k when one of the top k chunks comes from an
answering document. Prints hit@1 / hit@5 / MRR@10 per retriever and language.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowledge.knowledge_base import KnowledgeBase  # noqa: E402
from knowledge.settings import KnowledgeSettings  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "bench" / "kb-openmmlab"
QUESTIONS = Path(__file__).with_name("kb_questions.jsonl")


def ranked_sources(kb: KnowledgeBase, ids: list[str]) -> list[str]:
    rows = kb.manifest.chunks(ids)
    return [rows[i].source for i in ids if i in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kb-bench-work"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    base = KnowledgeSettings.model_validate(
        {"sources": [{"path": str(args.corpus)}], "embedder": {"threads": args.threads}}
    )
    kb = KnowledgeBase.open(base, args.work)
    kb.build(progress=sys.stderr.isatty())
    kb.warm_up()
    prefix = args.corpus.name + "/"
    questions = [json.loads(line) for line in QUESTIONS.open(encoding="utf-8")]

    def fused(fusion: str, weight: float = 0.5, rrf_k: int = 60) -> KnowledgeBase:
        search = base.search.model_copy(
            update={"fusion": fusion, "dense_weight": weight, "rrf_k": rrf_k}
        )
        other = KnowledgeBase(
            base.model_copy(update={"search": search}), args.work, embedder=kb.embedder
        )
        return other

    retrievers = {
        "dense": None,
        "bm25": None,
        "rrf k=60": fused("rrf"),
        "rrf k=10": fused("rrf", rrf_k=10),
        **{f"weighted {w:.1f}": fused("weighted", w) for w in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)},
    }
    results: dict[str, dict[str, list[int | None]]] = {name: {} for name in retrievers}
    for question in questions:
        answers = {prefix + a for a in question["answers"]}
        text = question["question"]
        for name, searcher in retrievers.items():
            if name == "dense":
                vector = kb.embedder.embed_query([text])
                ids = [n.id for n in kb.store.query(vector, 10)[0]]
            elif name == "bm25":
                ids = [i for i, _ in kb.bm25.top(kb.tokenizer(text), 10)[0]]
            else:
                assert searcher is not None
                ids = [h.chunk_id for h in searcher.search(text, k=10)]
            sources = ranked_sources(kb, ids)
            rank = next((r for r, s in enumerate(sources, 1) if s in answers), None)
            results[name].setdefault(question["lang"], []).append(rank)

    header = f"{'retriever':<14}" + "".join(
        f"{lang + ' hit@1':>11}{lang + ' hit@5':>11}" for lang in ("en", "zh", "all")
    )
    print(f"{len(questions)} questions ({sum(q['lang'] == 'zh' for q in questions)} Chinese)")
    print(header + f"{'MRR@10':>9}")
    for name, by_lang in results.items():
        by_lang["all"] = [r for lang in ("en", "zh") for r in by_lang.get(lang, [])]
        cells = ""
        for lang in ("en", "zh", "all"):
            ranks = by_lang.get(lang, [])
            n = max(len(ranks), 1)
            hit1 = sum(1 for r in ranks if r == 1) / n
            hit5 = sum(1 for r in ranks if r is not None and r <= 5) / n
            cells += f"{hit1:>11.2f}{hit5:>11.2f}"
        ranks = by_lang["all"]
        mrr = sum(1 / r for r in ranks if r) / max(len(ranks), 1)
        print(f"{name:<14}{cells}{mrr:>9.3f}")


if __name__ == "__main__":
    main()
