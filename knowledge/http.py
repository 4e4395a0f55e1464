"""One POST-JSON-with-retries for the knowledge base's HTTP backends (embeddings, rerank).

Retries 429, 5xx and transport errors with exponential backoff; every failure becomes the
caller's error type with a message naming the URL and what went wrong.
"""

from __future__ import annotations

from typing import Any

import httpx
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)


def post_json(
    client: Any,
    url: str,
    body: dict[str, Any],
    error: type[Exception],
    *,
    attempts: int,
    backoff: float,
    max_wait: float,
    jitter: float = 0.0,
) -> Any:
    """POST ``body`` to ``url`` with ``client`` (an httpx.Client); return the parsed JSON."""

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, httpx.HTTPStatusError):
            return exc.response.status_code == 429 or exc.response.status_code >= 500
        return isinstance(exc, httpx.TransportError)

    try:
        for attempt in Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=backoff, max=max_wait) + wait_random(0, jitter),
            retry=retry_if_exception(retryable),
            reraise=True,
        ):
            with attempt:
                response = client.post(url, json=body)
                response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        raise error(
            f"{url} answered {exc.response.status_code}: {exc.response.text[:200]}"
        ) from None
    except httpx.HTTPError as exc:
        raise error(f"cannot reach {url}: {exc}") from None
    try:
        return response.json()
    except ValueError as exc:
        raise error(f"{url}: unexpected answer ({exc})") from None
