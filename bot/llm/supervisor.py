"""Run the model server as a child process and keep it running.

The supervisor opens a listening socket on a private loopback port once and hands it to each
child it starts (``python -m bot.llm.serve --fd N``), so the address stays the same across
restarts. It waits for the child's ``/healthz``, then watches it:

- the child exits (a segfault, an out-of-memory kill, an error): the exit is logged with its
  signal, and the child is started again after a backoff that doubles with each recent crash;
- a call gets no byte for ``hang_seconds``: the child is hung, it is killed and restarted;
- ``crash_loop_crashes`` crashes within ``crash_loop_seconds``: restarting stops (a build
  that crashes on this CPU crashes every time), the state is ``failed`` until the bot restarts,
  and every call fails at once with ``ModelUnavailable`` (a hybrid model answers remotely).

Calls go one at a time (``serving``): the server runs one request at a time anyway, and a call
that waited for another group's answer must not look hung. A call that fails because the child
died or hung raises ``ModelCrashed``, a ``BrokenAnswer``: the caller may ask once more, and
that call waits until the child is back.

The child dies with the daemon, even a killed one: it reads its stdin, a pipe from here, and
exits when the pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum
from typing import Any

import httpx

from bot import metrics
from bot.config import ModelProcessSettings
from bot.llm.openai_compatible import dropped, timed_out
from bot.llm.protocol import BrokenAnswer, LLMError, ModelError, ModelUnavailable

log = logging.getLogger(__name__)

HEALTH_POLL_SECONDS = 0.1
STOP_GRACE_SECONDS = 5.0
EXIT_WAIT_SECONDS = 5.0  # after a dropped connection, how long the child gets to be seen dead


class State(StrEnum):
    STOPPED = "stopped"  # not started yet, or closed
    STARTING = "starting"  # loading the model
    UP = "up"
    RESTARTING = "restarting"  # waiting out the backoff after a crash
    FAILED = "failed"  # a crash loop: not restarted


class ModelCrashed(BrokenAnswer):
    """The model process died or hung during this call; it is being restarted."""


def describe_exit(returncode: int) -> str:
    """What a child's exit status says, for people."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    why = {
        "SIGKILL": " (killed: out of memory, or by hand)",
        "SIGILL": " (an instruction this CPU lacks: see huixiangdou-bot doctor)",
        "SIGSEGV": " (a crash in native code: see huixiangdou-bot doctor)",
    }
    return f"died of {name}{why.get(name, '')}"


class ModelProcess:
    """One supervised model server; ``command`` starts it (``--fd N`` is added)."""

    def __init__(
        self,
        name: str,
        command: list[str],
        settings: ModelProcessSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.command = command
        self.settings = settings
        self.clock = clock
        self.state = State.STOPPED
        self.pid: int | None = None
        self.restarts = 0
        self.last_crash: str | None = None
        # Called after each restart (the client drops the old process's connections).
        self.on_restart: Callable[[], Awaitable[None]] | None = None
        self._crashes: deque[float] = deque()
        self._socket: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._turn = asyncio.Lock()
        self._kill_reason: str | None = None
        self._startup_error: str | None = None
        self._output: deque[str] = deque(maxlen=20)
        self._closed = False

    @property
    def url(self) -> str:
        if self._socket is None:
            raise RuntimeError("the model process has not been started")
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def health(self) -> dict[str, Any]:
        """What /healthz and doctor show."""
        return {
            "state": str(self.state),
            "pid": self.pid,
            "busy": self._turn.locked(),  # a call in flight
            "restarts": self.restarts,
            "recent_crashes": len(self._recent_crashes()),
            "last_crash": self.last_crash,
        }

    # -- start and stop -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the child and wait until it serves, or until restarting it stopped.

        Raises ``ModelError`` when the first child exits with an error of its own (the model
        cannot be loaded: its log says why); a child killed by a signal is restarted instead.
        """
        if self._closed:
            raise ModelError(f"{self.name}: the model process was stopped")
        if self._task is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            self._socket = sock
            self._task = asyncio.create_task(self._supervise(), name=f"supervise {self.name}")
        await self.wait_for(State.UP, State.FAILED)
        if self._startup_error is not None:
            raise ModelError(f"{self.name}: the model process {self._startup_error}")

    async def stop(self) -> None:
        self._closed = True
        await self._set_state(State.STOPPED)
        process = self._process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._socket is not None:
            self._socket.close()

    # -- calls --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Make one call to the running child: waits for its turn and for the child to be
        up; a failure that means the child died or hung becomes ``ModelCrashed``."""
        async with self._turn:
            await self._wait_until_up()
            process = self._process
            try:
                yield
            except LLMError as exc:
                crash = await self._diagnose(exc, process)
                if crash is None:
                    raise
                raise ModelCrashed(f"{self.name}: the model process {crash}") from exc

    async def _wait_until_up(self) -> None:
        timeout = self.settings.start_timeout_seconds + self.settings.restart_max_seconds
        try:
            async with asyncio.timeout(timeout):
                await self.wait_for(State.UP, State.FAILED, State.STOPPED)
        except TimeoutError:
            raise ModelUnavailable(
                f"{self.name}: the model process is not up after {timeout:g}s"
            ) from None
        if self.state is State.FAILED:
            raise ModelUnavailable(
                f"{self.name}: the model process crashed {self.settings.crash_loop_crashes} "
                f"times within {self.settings.crash_loop_seconds:g}s and is not restarted "
                f"(last: {self.last_crash}); see huixiangdou-bot doctor"
            )
        if self.state is State.STOPPED:
            raise ModelUnavailable(f"{self.name}: the model process is stopped")

    async def _diagnose(
        self, exc: LLMError, process: asyncio.subprocess.Process | None
    ) -> str | None:
        """Why the call failed, when the child is to blame (None otherwise). Returns once the
        supervisor has seen the child go, so the next call waits for its successor."""
        if process is None:
            return None
        if timed_out(exc):
            if process.returncode is None:
                hang = self.settings.hang_seconds
                self._kill_reason = f"hung (no answer for {hang:g}s) and was killed"
                log.error("%s: no answer for %gs: killing the model process", self.name, hang)
                process.kill()
            why = "hung while answering and was killed"
        elif dropped(exc):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), EXIT_WAIT_SECONDS)
            if process.returncode is None:
                return "dropped the connection"
            why = f"{describe_exit(process.returncode)} while answering"
        else:
            return None
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._process is not process or self.state is not State.UP
            )
        return why

    # -- the supervising loop -----------------------------------------------------------------

    async def _supervise(self) -> None:
        ever_up = False
        while not self._closed:
            ended, was_up = await self._run_once()
            if self._closed:
                return
            ever_up = ever_up or was_up
            if not ever_up and ended.startswith("exited with status"):
                # The child's own error before it ever served (a model it cannot load):
                # restarting would say the same again.
                self._startup_error = f"{ended}: {self._last_output()}"
                log.error("%s: the model process %s", self.name, self._startup_error)
                await self._set_state(State.FAILED)
                return
            now = self.clock()
            self._crashes.append(now)
            self.last_crash = f"{ended} {'while up' if was_up else 'during start-up'}"
            recent = len(self._recent_crashes())
            if recent >= self.settings.crash_loop_crashes:
                log.error(
                    "%s: the model process %s; %d crashes within %gs: not restarting it. The "
                    "bot answers only what needs no model until it is restarted; run "
                    "huixiangdou-bot doctor",
                    self.name,
                    self.last_crash,
                    recent,
                    self.settings.crash_loop_seconds,
                )
                metrics.MODEL_PROCESS_UP.set(0)
                await self._set_state(State.FAILED)
                return
            delay = min(
                self.settings.restart_max_seconds,
                self.settings.restart_initial_seconds * 2 ** (recent - 1),
            )
            log.error(
                "%s: the model process %s; restarting it in %.1fs",
                self.name,
                self.last_crash,
                delay,
            )
            await self._set_state(State.RESTARTING)
            await asyncio.sleep(delay)
            self.restarts += 1
            metrics.MODEL_PROCESS_RESTARTS.inc()

    async def _run_once(self) -> tuple[str, bool]:
        """Start one child and wait until it ends: why it ended, and whether it served."""
        assert self._socket is not None
        fd = self._socket.fileno()
        self._kill_reason = None
        process = await asyncio.create_subprocess_exec(
            *self.command,
            "--fd",
            str(fd),
            stdin=asyncio.subprocess.PIPE,  # never written: its closing tells the child to go
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            pass_fds=(fd,),
            start_new_session=True,  # a Ctrl-C in the terminal is the daemon's to handle
        )
        self._process, self.pid = process, process.pid
        log.info("%s: model process %d starting", self.name, process.pid)
        await self._set_state(State.STARTING)
        output = asyncio.create_task(self._forward(process))
        exited = asyncio.create_task(process.wait())
        was_up = False
        try:
            if await self._became_ready(process, exited):
                was_up = True
                log.info("%s: model process %d is up", self.name, process.pid)
                if self.restarts and self.on_restart is not None:
                    await self.on_restart()
                metrics.MODEL_PROCESS_UP.set(1)
                await self._set_state(State.UP)
            returncode = await exited
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await output
            if process.stdin is not None:
                process.stdin.close()
            metrics.MODEL_PROCESS_UP.set(0)
        if not self._closed:
            metrics.MODEL_PROCESS_CRASHES.labels(self._cause_label(returncode)).inc()
        return self._kill_reason or describe_exit(returncode), was_up

    def _cause_label(self, returncode: int) -> str:
        if self._kill_reason is not None:
            return "hang" if "hung" in self._kill_reason else "start-timeout"
        if returncode >= 0:
            return "exit"
        with contextlib.suppress(ValueError):
            return signal.Signals(-returncode).name
        return f"signal {-returncode}"

    async def _became_ready(
        self, process: asyncio.subprocess.Process, exited: asyncio.Task[int]
    ) -> bool:
        """Poll the child's /healthz until it answers; False when it exited first or took
        longer than ``start_timeout_seconds`` (then it is killed)."""
        deadline = self.clock() + self.settings.start_timeout_seconds
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
            while not exited.done() and not self._closed:
                # The parent holds the socket open, so a request waits until the child accepts
                # it; a dead child is noticed by ``exited``, not by a refused connection.
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/healthz")).status_code == 200:
                        return True
                if self.clock() > deadline:
                    seconds = self.settings.start_timeout_seconds
                    self._kill_reason = f"did not start within {seconds:g}s and was killed"
                    process.kill()
                    break
                await asyncio.wait([exited], timeout=HEALTH_POLL_SECONDS)
        return False

    async def _forward(self, process: asyncio.subprocess.Process) -> None:
        """The child's output into our log, the last lines kept for error messages."""
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self._output.append(line)
                log.info("%s [%d]: %s", self.name, process.pid, line)

    def _last_output(self) -> str:
        """The child's last error line (a traceback ends with one), else its last line."""
        errors = [line for line in self._output if "error" in line.lower()]
        return (errors or list(self._output) or ["(no output)"])[-1]

    def _recent_crashes(self) -> list[float]:
        since = self.clock() - self.settings.crash_loop_seconds
        while self._crashes and self._crashes[0] < since:
            self._crashes.popleft()
        return list(self._crashes)

    # -- state --------------------------------------------------------------------------------

    async def _set_state(self, state: State) -> None:
        async with self._changed:
            if self.state is State.STOPPED and self._closed and state is not State.STOPPED:
                return
            self.state = state
            self._changed.notify_all()

    async def wait_for(self, *states: State) -> None:
        """Until the process is in one of ``states``."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.state in states)
