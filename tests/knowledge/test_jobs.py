"""The scheduled re-index: a plain function called with an injected clock, and the daemon's
scheduler that runs it in a worker thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app.jobs import Jobs
from bot.app.services import build_services
from bot.config import Config
from knowledge.indexer import build_lock
from knowledge.jobs import reindex
from knowledge.knowledge_base import KnowledgeBase
from tests.fakes import ScriptedChatModel

KB = Callable[..., KnowledgeBase]
NOON = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.integration
def test_reindex_picks_up_changes_and_stamps_the_clock_time(make_kb: KB, corpus: Path) -> None:
    kb = make_kb(sources=[{"path": str(corpus)}])
    first = reindex(kb, clock=lambda: NOON)
    assert first is not None and first.added == 9
    assert kb.status().last_build == "2025-06-01T12:00:00+00:00"

    (corpus / "zh" / "数据集.md").unlink()
    (corpus / "new.md").write_text("# New\n\nA page added later.\n", encoding="utf-8")
    later = NOON + timedelta(hours=1)
    report = reindex(kb, clock=lambda: later)
    assert report is not None and (report.added, report.removed) == (1, 1)
    status = kb.status()
    assert status.last_build == "2025-06-01T13:00:00+00:00"
    indexed = {row.source: row.indexed_at for row in kb.manifest.documents().values()}
    assert indexed["corpus/new.md"] == "2025-06-01T13:00:00+00:00"
    assert indexed["corpus/faq.txt"] == "2025-06-01T12:00:00+00:00"  # untouched since


@pytest.mark.integration
def test_reindex_skips_while_another_build_runs(make_kb: KB, corpus: Path) -> None:
    kb = make_kb(sources=[{"path": str(corpus)}])
    other = make_kb(sources=[{"path": str(corpus)}])
    with build_lock(other):  # e.g. `kb build` in another process, on the same work dir
        assert reindex(kb, clock=lambda: NOON) is None
    assert kb.status().last_build is None


@pytest.mark.integration
def test_reindex_never_raises(make_kb: KB, corpus: Path) -> None:
    kb = make_kb(sources=[{"path": str(corpus / "gone")}])
    assert reindex(kb, clock=lambda: NOON) is None


@pytest.mark.integration
async def test_the_daemon_schedules_the_job_and_runs_it_off_the_event_loop(
    config_factory: Callable[..., Config], corpus: Path
) -> None:
    config = config_factory(
        {"knowledge": {"sources": [{"path": str(corpus)}], "reindex": {"interval_minutes": 30}}}
    )
    services = build_services(config, llm=ScriptedChatModel())
    assert services.knowledge is not None
    threads: list[str] = []
    real_build = services.knowledge.build

    def recording_build(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return real_build(*args, **kwargs)  # type: ignore[arg-type]

    services.knowledge.build = recording_build  # type: ignore[method-assign]
    jobs = Jobs(services)
    jobs.start()
    try:
        assert jobs.scheduler is not None
        job = jobs.scheduler.get_job("knowledge-reindex")
        assert job.trigger.interval == timedelta(minutes=30)
        job.modify(next_run_time=datetime.now(UTC))
        ticks = 0
        for _ in range(600):  # the loop keeps turning while the build runs
            await asyncio.sleep(0.05)
            ticks += 1
            if services.knowledge.status().last_build:
                break
        assert services.knowledge.status().documents == 9
        assert threads and threads[0] != threading.main_thread().name
        assert ticks > 1
    finally:
        jobs.stop()
        await services.close()


@pytest.mark.unit
async def test_no_schedule_when_the_interval_is_zero(
    config_factory: Callable[..., Config], corpus: Path
) -> None:
    config = config_factory({"knowledge": {"sources": [{"path": str(corpus)}]}})
    jobs = Jobs(build_services(config, llm=ScriptedChatModel()))
    jobs.start()
    assert jobs.scheduler is None
    jobs.stop()
