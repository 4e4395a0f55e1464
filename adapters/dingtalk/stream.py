"""The DingTalk stream connection: the SDK's ``DingTalkStreamClient`` in a thread of its own.

The SDK parses the frames, routes them to the handlers, builds the acks, echoes the gateway's
pings and closes the socket on a ``disconnect`` frame. Its ``start()`` loop is replaced here,
because it cannot be stopped (it swallows cancellation and sleeps 10 s), reconnects after a
clean close at once and after an error after a fixed 10 s, drops the whole connection over one
frame that is not JSON, and reads the gateway address from an environment variable at import.
This one takes the address from bot.yaml, reconnects with jittered exponential backoff (reset
by a connection that stayed up), logs a malformed frame once and refuses it, and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_plus

import dingtalk_stream
import httpx
import websockets
from dingtalk_stream import (
    AckMessage,
    CallbackMessage,
    ChatbotMessage,
    EventMessage,
    SystemMessage,
)
from dingtalk_stream.frames import Headers
from dingtalk_stream.version import VERSION_STRING
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)

from adapters.dingtalk.settings import DingTalkSettings

log = logging.getLogger(__name__)

OPEN_CONNECTION_URI = "/v1.0/gateway/connections/open"
PING_TOPIC = "ping"
# A connection that lasted this long was healthy: the next one starts without waiting.
STABLE_SECONDS = 30.0
FRAME_CLASSES: dict[str, Any] = {
    SystemMessage.TYPE: SystemMessage,
    EventMessage.TYPE: EventMessage,
    CallbackMessage.TYPE: CallbackMessage,
}

Receive = Callable[[CallbackMessage], Awaitable[tuple[int, str]]]


class ConnectionFailed(Exception):
    """Opening the stream failed, or it closed soon after opening: wait, then try again."""


class MessageHandler(dingtalk_stream.CallbackHandler):
    """Robot messages (``/v1.0/im/bot/messages/get``): ``receive`` stores the message and says
    how to ack it; the SDK sends the ack. The answer comes later, from the core."""

    def __init__(self, receive: Receive) -> None:
        super().__init__()
        self._receive = receive

    async def process(self, message: CallbackMessage) -> tuple[int, str]:
        return await self._receive(message)


class StreamClient(dingtalk_stream.DingTalkStreamClient):
    websocket: Any  # the open connection, or None

    def __init__(self, settings: DingTalkSettings, handler: MessageHandler) -> None:
        secret = settings.client_secret.get_secret_value()
        super().__init__(dingtalk_stream.Credential(settings.client_id, secret), logger=log)
        self.settings = settings
        self.register_callback_handler(ChatbotMessage.TOPIC, handler)
        self.connections = 0
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the connection loop ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, serve frames, reconnect, until ``shutdown``."""
        self.pre_start()
        settings = self.settings
        while not self._stopping.is_set():
            retrying = AsyncRetrying(
                wait=wait_random_exponential(
                    multiplier=settings.reconnect_initial_seconds,
                    max=settings.reconnect_max_seconds,
                ),
                retry=retry_if_exception_type(ConnectionFailed),
                sleep=self._pause,
                before_sleep=_log_retry,
            )
            async for attempt in retrying:
                with attempt:
                    await self._session()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _session(self) -> None:
        """One connection, from asking for a ticket until the socket closes."""
        if self._stopping.is_set():
            return
        endpoint, ticket = await self._open_connection()
        opened = time.monotonic()
        reason = "closed by the gateway"
        try:
            async with websockets.connect(
                f"{endpoint}?ticket={quote_plus(ticket)}",
                open_timeout=self.settings.request_timeout_seconds,
            ) as websocket:
                if self._stopping.is_set():  # shutdown came while connecting
                    return
                self.websocket = websocket
                self.connections += 1
                log.info("dingtalk: stream connected (connection %d)", self.connections)
                async for frame in websocket:
                    self._receive(frame)
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self.websocket = None
        if self._stopping.is_set():
            return
        if time.monotonic() - opened < STABLE_SECONDS:
            raise ConnectionFailed(f"the stream closed soon after opening ({reason})")
        log.warning("dingtalk: the stream closed (%s); reconnecting", reason)

    async def _open_connection(self) -> tuple[str, str]:
        """POST the credentials and subscriptions to the gateway: the websocket URL and ticket.
        (The SDK's ``open_connection`` blocks without a timeout on an address read at import.)"""
        body = {
            "clientId": self.credential.client_id,
            "clientSecret": self.credential.client_secret,
            "subscriptions": [
                {"type": "CALLBACK", "topic": topic} for topic in self.callback_handler_map
            ],
            "ua": f"dingtalk-sdk-python/v{VERSION_STRING}-union",
            "localIp": "",
        }
        url = self.settings.gateway_endpoint + OPEN_CONNECTION_URI
        try:
            async with httpx.AsyncClient(timeout=self.settings.request_timeout_seconds) as client:
                response = await client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if response.status_code != 200:
            code, message = answer.get("code"), answer.get("message") or response.reason_phrase
            refused = response.status_code in (401, 403)
            hint = " (check client_id and client_secret)" if refused else ""
            raise ConnectionFailed(
                f"{url}: code {code}: {message} (HTTP {response.status_code}){hint}"
            )
        endpoint, ticket = answer.get("endpoint"), answer.get("ticket")
        if not isinstance(endpoint, str) or not isinstance(ticket, str) or not ticket:
            raise ConnectionFailed(f"{url}: no endpoint and ticket in the answer")
        return endpoint, ticket

    # -- frames -------------------------------------------------------------------------------

    def _receive(self, frame: str | bytes) -> None:
        try:
            message = json.loads(frame)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            log.warning("dingtalk: dropped a frame that is not a JSON object: %.80r", frame)
            return
        task = asyncio.get_running_loop().create_task(self.background_task(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def route_message(self, json_message: dict[str, Any]) -> str:
        """The SDK's routing, except that a frame it cannot parse is refused (logged once,
        acked with 400) rather than left unanswered for the gateway to send again, and a ping
        is echoed without the SDK's warning about an unknown topic."""
        kind = json_message.get("type")
        frame_class = FRAME_CLASSES.get(kind) if isinstance(kind, str) else None
        if frame_class is not None:
            try:
                frame = frame_class.from_dict(json_message)
            except (ValueError, TypeError, AttributeError, RecursionError) as exc:
                await self._refuse(json_message, f"{type(exc).__name__}: {exc}")
                return ""
            if isinstance(frame, SystemMessage) and frame.headers.topic == PING_TOPIC:
                await self._send_ack(await self.system_handler.raw_process(frame))
                return ""
        result: str = await super().route_message(json_message)
        return result

    async def _refuse(self, json_message: dict[str, Any], reason: str) -> None:
        headers = json_message.get("headers")
        message_id = headers.get("messageId") if isinstance(headers, dict) else None
        log.warning(
            "dingtalk: refused a malformed %s frame %s: %s",
            json_message.get("type") or "untyped",
            message_id or "without a messageId",
            reason[:200],
        )
        if not isinstance(message_id, str):
            return
        ack = AckMessage()
        ack.code = AckMessage.STATUS_BAD_REQUEST
        ack.headers.message_id = message_id
        ack.headers.content_type = Headers.CONTENT_TYPE_APPLICATION_JSON
        ack.message = "malformed frame"
        ack.data = {"response": "malformed frame"}
        await self._send_ack(ack)

    async def _send_ack(self, ack: AckMessage) -> None:
        websocket = self.websocket
        if websocket is not None:
            await websocket.send(json.dumps(ack.to_dict()))

    # -- stopping -----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        self._stopping.set()
        websocket = self.websocket
        if websocket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(), 2)

    @property
    def connected(self) -> bool:
        return self.websocket is not None


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("dingtalk: %s; trying again in %.1f s", error, wait)


class StreamThread:
    """Runs a StreamClient on an event loop of its own (the SDK's handlers block it while
    the inbox stores a message; the core's loop must not wait on that)."""

    def __init__(self, client: StreamClient) -> None:
        self.client = client
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dingtalk-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self._ready.set()
        try:
            loop.run_until_complete(self.client.start())
        except Exception as exc:
            log.error("dingtalk: the stream client stopped: %s: %s", type(exc).__name__, exc)
        finally:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def connected(self) -> bool:
        return self._thread.is_alive() and self.client.connected

    def stop(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                asyncio.run_coroutine_threadsafe(self.client.shutdown(), loop)
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            log.warning("dingtalk: the stream thread did not stop in time")
