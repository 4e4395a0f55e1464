"""The model's process, supervised: killed mid-answer, killed while loading, hung, crashing in a
loop, failing to load. The real child (bot.llm.serve with the bundled GGUF), real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bot.config import LLMSettings, ModelProcessSettings
from bot.llm.llama_cpp import LlamaCppChatModel
from bot.llm.planner import QWEN25
from bot.llm.protocol import ModelError, ModelUnavailable
from bot.llm.scoring import score
from bot.llm.supervisor import ModelCrashed, ModelProcess, State
from tests.llm.gguf_factory import write_gguf

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A question SmolLM2 answers at length: the answer is still coming when the process is killed.
LONG: Any = [{"role": "user", "content": "Explain step by step how to install mmdetection."}]
SHORT: Any = [{"role": "user", "content": "What is the capital of France?"}]


def restarts() -> float:
    return REGISTRY.get_sample_value("hxd_model_process_restarts_total") or 0.0


def model(**process: Any) -> LlamaCppChatModel:
    settings = {"restart_initial_seconds": 0.05, **process}
    return LlamaCppChatModel(
        LLMSettings(n_ctx=1024, n_threads=1, process=ModelProcessSettings(**settings))
    )


@pytest.fixture
async def llm() -> AsyncIterator[LlamaCppChatModel]:
    running = model()
    await running.warm_up()
    yield running
    await running.close()


async def stream_until_first_piece_then(llm: LlamaCppChatModel, signum: int) -> list[str]:
    """Start a long answer; when its first piece arrives, send ``signum`` to the process."""
    pieces: list[str] = []
    async for piece in llm.stream(LONG, max_tokens=400):
        if not pieces:
            os.kill(llm.process.pid or 0, signum)
        pieces.append(piece)
    return pieces


async def test_killed_mid_answer_the_call_fails_clearly_and_the_process_comes_back(
    llm: LlamaCppChatModel,
) -> None:
    first_pid, before = llm.process.pid, restarts()
    with pytest.raises(ModelCrashed, match=r"died of SIGKILL .* while answering"):
        await stream_until_first_piece_then(llm, signal.SIGKILL)
    completion = await llm.complete(SHORT, max_tokens=8)  # waits for the new process
    assert completion.text.strip()
    health = llm.health()
    assert health["state"] == "up" and health["pid"] != first_pid
    assert health["restarts"] == 1 and health["last_crash"].endswith("while up")
    assert "SIGKILL" in health["last_crash"]
    assert restarts() == before + 1


async def test_a_hung_process_is_killed_after_hang_seconds_and_restarted() -> None:
    llm = model(hang_seconds=2)
    try:
        await llm.warm_up()
        with pytest.raises(ModelCrashed, match="hung while answering"):
            await stream_until_first_piece_then(llm, signal.SIGSTOP)
        # The next call waits for the new process (the socket is the same).
        assert (await llm.complete(SHORT, max_tokens=8)).text.strip()
        health = llm.health()
        assert health["restarts"] == 1
        assert health["last_crash"] == "hung (no answer for 2s) and was killed while up"
    finally:
        await llm.close()


async def test_killed_while_loading_it_is_started_again() -> None:
    llm = model()
    try:
        llm.vocabulary.load()
        starting = asyncio.create_task(llm.process.start())
        await llm.process.wait_for(State.STARTING)  # spawned, not serving yet
        os.kill(llm.process.pid or 0, signal.SIGKILL)
        await starting
        health = llm.health()
        assert health["state"] == "up" and health["restarts"] == 1
        assert health["last_crash"] == (
            "died of SIGKILL (killed: out of memory, or by hand) during start-up"
        )
    finally:
        await llm.close()


async def test_a_crash_loop_stops_restarting_and_every_call_fails_at_once() -> None:
    llm = model(crash_loop_crashes=2, crash_loop_seconds=600)
    try:
        await llm.warm_up()
        os.kill(llm.process.pid or 0, signal.SIGKILL)  # while idle
        await llm.process.wait_for(State.RESTARTING)
        await llm.process.wait_for(State.UP)
        last_pid = llm.process.pid
        os.kill(last_pid or 0, signal.SIGKILL)
        await llm.process.wait_for(State.FAILED)
        with pytest.raises(ModelUnavailable, match="crashed 2 times within 600s and is not"):
            await llm.complete(SHORT, max_tokens=8)
        result = await score(llm, SHORT)  # scoring never raises: no score, and why
        assert result.value is None and "not restarted" in result.text
        health = llm.health()
        assert (health["state"], health["pid"], health["restarts"]) == ("failed", last_pid, 1)
    finally:
        await llm.close()


async def test_a_process_that_cannot_load_its_model_fails_start_up_with_its_error() -> None:
    settings = ModelProcessSettings()
    # A stand-in child that fails the way bot.llm.serve does when llama.cpp refuses the file.
    command = [
        sys.executable,
        "-c",
        "import sys; print('cannot load the model: ValueError: unknown architecture qwen9',"
        " file=sys.stderr); sys.exit(2)",
    ]
    process = ModelProcess("stand-in", command, settings)
    try:
        with pytest.raises(ModelError, match="exited with status 2: cannot load the model"):
            await process.start()
        assert process.state is State.FAILED and process.restarts == 0
    finally:
        await process.stop()


async def test_a_model_that_does_not_fit_is_refused_before_a_process_starts(
    tmp_path: Path,
) -> None:
    path = write_gguf(tmp_path / "qwen2.5-32b-instruct-q4_k_m.gguf", QWEN25["32B"])
    llm = LlamaCppChatModel(LLMSettings(model_path=path, tier="4gb", n_gpu_layers=-1))
    with pytest.raises(ModelError, match="does not fit tier 4gb"):
        await llm.warm_up()
    assert llm.process.pid is None
    await llm.close()
