"""DingTalk's HTTP side for sending: the message's sessionWebhook, the access token, the robot
open API and the AI card API, over httpx.

The stream SDK has helpers for these (``reply_markdown``, ``AICardReplier``), but they call
blocking ``requests`` without a timeout, read one endpoint fixed at import, and swallow every
error into a log line and ``None``: the outbox could not tell a rate limit (retry) from a
refusal (fail with DingTalk's code). The wire format here is the one those helpers send.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.dingtalk.format import TOKEN_INVALID_CODES
from adapters.dingtalk.settings import DingTalkSettings

TOKEN_URI = "/v1.0/oauth2/accessToken"
GROUP_SEND_URI = "/v1.0/robot/groupMessages/send"
SINGLE_SEND_URI = "/v1.0/robot/oToMessages/batchSend"
CARD_CREATE_URI = "/v1.0/card/instances/createAndDeliver"
CARD_UPDATE_URI = "/v1.0/card/instances"
CARD_STREAM_URI = "/v1.0/card/streaming"
# A token is used until this long before DingTalk says it expires (it lives 7200 s).
TOKEN_MARGIN_SECONDS = 300


class DingTalkError(Exception):
    """DingTalk said no, with its code and message (and the HTTP status, when not 200)."""

    def __init__(self, what: str, code: Any, message: str, status: int | None = None) -> None:
        self.code = "" if code is None else str(code)
        self.message = message
        self.status = status
        where = f" (HTTP {status})" if status and status != 200 else ""
        super().__init__(f"{what}: code {self.code or '?'}: {message}{where}")


@dataclass
class _Token:
    value: str
    expires: float  # time.monotonic()


def _error_fields(response: httpx.Response) -> tuple[Any, str]:
    """(code, message) from an error answer of either API; the status text if not JSON."""
    try:
        body = response.json()
    except ValueError:
        return response.status_code, response.reason_phrase or "not JSON"
    if not isinstance(body, dict):
        return response.status_code, "not a JSON object"
    code = body.get("code", body.get("errcode"))
    message = body.get("message", body.get("errmsg")) or ""
    return code, str(message)


class OpenApi:
    """One app's calls. The access token is cached until shortly before it expires and fetched
    again once when DingTalk refuses it."""

    def __init__(self, settings: DingTalkSettings) -> None:
        self.settings = settings
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.settings.request_timeout_seconds)

    # -- access token -------------------------------------------------------------------------

    async def access_token(self, client: httpx.AsyncClient) -> str:
        async with self._token_lock:
            token = self._token
            if token is not None and time.monotonic() < token.expires:
                return token.value
            url = self.settings.openapi_endpoint + TOKEN_URI
            body = {
                "appKey": self.settings.client_id,
                "appSecret": self.settings.client_secret.get_secret_value(),
            }
            response = await client.post(url, json=body)
            if response.status_code != 200:
                raise DingTalkError("access token", *_error_fields(response), response.status_code)
            answer = response.json()
            value, lifetime = answer.get("accessToken"), answer.get("expireIn")
            if not isinstance(value, str) or not value or not isinstance(lifetime, int):
                raise DingTalkError("access token", None, "no accessToken/expireIn in the answer")
            self._token = _Token(value, time.monotonic() + lifetime - TOKEN_MARGIN_SECONDS)
            return value

    def forget_token(self, refused: str) -> None:
        if self._token is not None and self._token.value == refused:
            self._token = None

    async def call(
        self, client: httpx.AsyncClient, method: str, uri: str, what: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """An open API call with the app's token; a refused token is replaced once."""
        for attempt in range(2):
            token = await self.access_token(client)
            response = await client.request(
                method,
                self.settings.openapi_endpoint + uri,
                content=json.dumps(body, ensure_ascii=False).encode(),
                headers={
                    "Content-Type": "application/json",
                    "x-acs-dingtalk-access-token": token,
                },
            )
            if response.status_code == 200:
                answer = response.json()
                return answer if isinstance(answer, dict) else {}
            code, message = _error_fields(response)
            refused = response.status_code == 401 or str(code) in TOKEN_INVALID_CODES
            if refused and attempt == 0:
                self.forget_token(token)
                continue
            raise DingTalkError(what, code, message, response.status_code)
        raise AssertionError("unreachable")

    # -- messages -----------------------------------------------------------------------------

    async def send_by_session(
        self, client: httpx.AsyncClient, webhook: str, title: str, text: str, at: list[str]
    ) -> None:
        """POST a markdown message to the callback's sessionWebhook (no token needed)."""
        body = {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": text},
            "at": {"atUserIds": at, "isAtAll": False},
        }
        response = await client.post(
            webhook,
            content=json.dumps(body, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        )
        code, message = _error_fields(response)
        if response.status_code != 200 or str(code) not in ("0", "None"):
            raise DingTalkError("sessionWebhook", code, message, response.status_code)

    async def send_markdown(
        self,
        client: httpx.AsyncClient,
        *,
        conversation_id: str,
        single_chat_user: str | None,
        title: str,
        text: str,
    ) -> str:
        """Send a markdown message as the robot through the open API: to a group by its
        openConversationId, or to one person by staff id. Returns the processQueryKey."""
        common: dict[str, Any] = {
            "robotCode": self.settings.client_id,
            "msgKey": "sampleMarkdown",
            "msgParam": json.dumps({"title": title, "text": text}, ensure_ascii=False),
        }
        if single_chat_user is None:
            body = {**common, "openConversationId": conversation_id}
            answer = await self.call(client, "POST", GROUP_SEND_URI, "group message", body)
        else:
            body = {**common, "userIds": [single_chat_user]}
            answer = await self.call(client, "POST", SINGLE_SEND_URI, "single chat message", body)
            if single_chat_user in (answer.get("flowControlledStaffIdList") or []):
                raise DingTalkError("single chat message", "90018", "flow controlled", 200)
            if single_chat_user in (answer.get("invalidStaffIdList") or []):
                raise DingTalkError("single chat message", "invalidStaffId", single_chat_user)
        return str(answer.get("processQueryKey") or "")

    # -- AI cards -----------------------------------------------------------------------------

    async def create_card(
        self,
        client: httpx.AsyncClient,
        *,
        out_track_id: str,
        conversation_id: str,
        single_chat_user: str | None,
        at: dict[str, str],
        params: dict[str, str],
    ) -> None:
        """Create an AI card from the configured template and deliver it to the chat."""
        body: dict[str, Any] = {
            "cardTemplateId": self.settings.card_template_id,
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": params},
            "callbackType": "STREAM",
            "userIdType": 1,
        }
        if single_chat_user is None:
            body["openSpaceId"] = f"dtv1.card//IM_GROUP.{conversation_id}"
            body["imGroupOpenSpaceModel"] = {"supportForward": True}
            deliver: dict[str, Any] = {"robotCode": self.settings.client_id}
            if at:
                deliver["atUserIds"] = at
            body["imGroupOpenDeliverModel"] = deliver
        else:
            body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{single_chat_user}"
            body["imRobotOpenSpaceModel"] = {"supportForward": True}
            body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT"}
        await self.call(client, "POST", CARD_CREATE_URI, "create AI card", body)

    async def update_card(
        self, client: httpx.AsyncClient, out_track_id: str, params: dict[str, str]
    ) -> None:
        body = {"outTrackId": out_track_id, "cardData": {"cardParamMap": params}}
        await self.call(client, "PUT", CARD_UPDATE_URI, "update AI card", body)

    async def stream_card(
        self,
        client: httpx.AsyncClient,
        out_track_id: str,
        *,
        key: str,
        content: str,
        guid: str,
        final: bool,
    ) -> None:
        """Replace the card's ``key`` with ``content`` (streaming: the client types it out)."""
        body = {
            "outTrackId": out_track_id,
            "guid": guid,
            "key": key,
            "content": content,
            "isFull": True,
            "isFinalize": final,
            "isError": False,
        }
        await self.call(client, "PUT", CARD_STREAM_URI, "stream AI card", body)
