"""Talking to WeCom's API: wechatpy's client for apps, and a small client of our own for what
wechatpy lacks (the group robot webhook and the AI bot's response_url).

Both take the API's origin from bot.yaml (``api_base_url``), so a deployment behind a proxy and
the tests' fake WeCom need no patching.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import httpx
import requests
from wechatpy.enterprise.client import WeChatClient
from wechatpy.exceptions import WeChatClientException

from adapters.wecom.format import ADVICE, TOKEN_EXPIRED_CODES

# Secrets that travel in query strings (and so into requests' exception messages).
_SECRET_PARAMS = re.compile(r"\b(corpsecret|access_token|key|response_code)=[^&\s'\")]+")


def redact(text: str) -> str:
    return _SECRET_PARAMS.sub(r"\1=***", text)


class _RedactQuery(logging.Filter):
    """httpx logs every request's URL at INFO and urllib3 at DEBUG, query string included:
    WeCom's robot key, access token and app secret travel there."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACT_QUERY = _RedactQuery()


def redact_request_logs() -> None:
    """Keep WeCom's secrets out of the HTTP libraries' request logs (idempotent)."""
    for name in ("httpx", "urllib3.connectionpool"):
        logging.getLogger(name).addFilter(_REDACT_QUERY)


class WeComError(Exception):
    """The API said no (``code`` is WeCom's errcode), or could not be reached (``code`` None)."""

    def __init__(self, what: str, code: int | None, msg: str, status: int | None = None) -> None:
        advice = ADVICE.get(code) if code is not None else None
        text = f"{what}: errcode {code}: {msg}" if code is not None else f"{what}: {msg}"
        if status is not None:
            text += f" (HTTP {status})"
        if advice:
            text += f": {advice}"
        super().__init__(text)
        self.code = code
        self.status = status


class _TimeoutSession(requests.Session):
    """requests has no session-wide timeout, and wechatpy fetches tokens without one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(*args, **kwargs)


class WeComClient(WeChatClient):  # type: ignore[misc]
    """wechatpy's WeCom client pointed at ``api_base_url``.

    wechatpy hard-codes the token URL in ``fetch_access_token``; this subclass builds it from
    the same origin as every other call. Its own retry on an expired token has no limit, so
    it is off, and ``call`` refreshes the token once instead.
    """

    def __init__(self, corp_id: str, secret: str, api_base_url: str, timeout: float) -> None:
        super().__init__(corp_id, secret, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = f"{api_base_url}/cgi-bin/"
        self._http = _TimeoutSession(timeout)

    def close(self) -> None:
        self._http.close()

    def fetch_access_token(self) -> dict[str, Any]:
        result: dict[str, Any] = self._fetch_access_token(
            url=f"{self.API_BASE_URL}gettoken",
            params={"corpid": self.corp_id, "corpsecret": self.secret},
        )
        return result

    def call(self, what: str, send: Callable[[], Any]) -> dict[str, Any]:
        """Run one API call (blocking: from a worker thread). An invalid or expired access
        token (40014, 42001) is fetched again and the call repeated, once."""
        try:
            try:
                result = send()
            except WeChatClientException as exc:
                if exc.errcode not in TOKEN_EXPIRED_CODES:
                    raise
                self.fetch_access_token()
                result = send()
        except WeChatClientException as exc:
            status = exc.response.status_code if exc.response is not None else None
            if exc.errcode is None:
                raise WeComError(what, None, "HTTP error", status) from None
            raise WeComError(what, int(exc.errcode), str(exc.errmsg), status) from None
        except requests.RequestException as exc:
            raise WeComError(what, None, redact(f"{type(exc).__name__}: {exc}")) from None
        except ValueError as exc:  # a token answer that is not JSON (a proxy's error page)
            raise WeComError(what, None, f"unreadable answer: {type(exc).__name__}") from None
        if not isinstance(result, dict):  # wechatpy hands back answers that are not JSON
            status = getattr(result, "status_code", None)
            raise WeComError(what, None, "unreadable answer (not JSON)", status)
        return result


class RobotClient:
    """Posts JSON messages to a group robot's webhook or an AI bot's response_url."""

    def __init__(self, api_base_url: str, timeout: float) -> None:
        self.webhook_url = f"{api_base_url}/cgi-bin/webhook/send"
        self._http = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def webhook(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._post("group robot webhook", self.webhook_url, body, {"key": key})

    async def respond(self, response_url: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._post("AI bot response_url", response_url, body)

    async def _post(
        self, what: str, url: str, body: dict[str, Any], params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            response = await self._http.post(url, json=body, params=params)
        except httpx.HTTPError as exc:  # its message never carries the URL (and so the key)
            raise WeComError(what, None, f"{type(exc).__name__}: {exc}") from None
        try:
            result = response.json() if response.content else {}
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise WeComError(what, None, "unreadable answer", response.status_code)
        code = int(result.get("errcode") or 0)
        if code or response.status_code >= 400:
            status = response.status_code if response.status_code >= 400 else None
            message = str(result.get("errmsg") or "HTTP error")
            raise WeComError(what, code or None, message, status)
        return result
