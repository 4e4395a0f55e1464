"""The remote client against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bot.config import LLMSettings, RemoteLLMSettings
from bot.llm.openai_compatible import OpenAICompatibleChatModel, parse_retry_after
from bot.llm.protocol import (
    BrokenAnswer,
    ContextTooLong,
    LLMError,
    RateLimited,
    Truncated,
    collect_notes,
)
from bot.llm.scoring import score
from tests.llm.fake_servers import BROKEN_STREAMS, FakeOpenAI, Step

pytestmark = pytest.mark.integration

MESSAGES: Any = [{"role": "user", "content": "How do I install mmdet?"}]


class Sleeps:
    """Records the waits tenacity asks for instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def remote(url: str, sleep: Sleeps | None = None, **overrides: Any) -> OpenAICompatibleChatModel:
    settings = RemoteLLMSettings(
        base_url=url,
        api_key="sk-test-secret",
        model="fake-model",
        retry_initial_seconds=0.5,
        retry_max_seconds=8,
        **overrides,
    )
    kwargs = {"sleep": sleep} if sleep is not None else {}
    return OpenAICompatibleChatModel(settings, LLMSettings(max_tokens=32), **kwargs)


async def test_complete_sends_the_openai_request_with_the_key() -> None:
    server = FakeOpenAI(default=Step(text="Use pip install mmdet."))
    async with server.running() as url:
        model = remote(url)
        completion = await model.complete(MESSAGES, max_tokens=20, temperature=0.0)
        await model.close()
    assert completion.text == "Use pip install mmdet."
    assert (completion.prompt_tokens, completion.completion_tokens) == (11, 3)
    body = server.requests[0]
    assert body["model"] == "fake-model" and body["messages"] == MESSAGES
    assert body["max_tokens"] == 20 and body["temperature"] == 0.0 and body["stream"] is False
    assert server.headers[0]["authorization"] == "Bearer sk-test-secret"


async def test_429_waits_as_long_as_retry_after_says_then_succeeds() -> None:
    sleeps = Sleeps()
    server = FakeOpenAI(script=[Step(status=429, retry_after="3"), Step(text="ok now")])
    async with server.running() as url:
        model = remote(url, sleeps)
        with collect_notes() as notes:
            completion = await model.complete(MESSAGES)
        await model.close()
    assert completion.text == "ok now"
    assert sleeps.waits == [3.0]
    assert len(server.requests) == 2
    assert notes["retries"] == ["HTTP 429, waited 3.0s"]


async def test_retry_after_longer_than_we_wait_fails_at_once_as_rate_limited() -> None:
    sleeps = Sleeps()
    server = FakeOpenAI(script=[Step(status=429, retry_after="120")])
    async with server.running() as url:
        model = remote(url, sleeps)
        with pytest.raises(RateLimited, match="asks to wait 120s"):
            await model.complete(MESSAGES)
        await model.close()
    assert sleeps.waits == [] and len(server.requests) == 1


async def test_500s_back_off_exponentially_with_jitter_then_give_up() -> None:
    sleeps = Sleeps()
    server = FakeOpenAI(default=Step(status=500))
    async with server.running() as url:
        model = remote(url, sleeps, attempts=4)
        with pytest.raises(LLMError, match="HTTP 500"):
            await model.complete(MESSAGES)
        await model.close()
    assert len(server.requests) == 4
    assert len(sleeps.waits) == 3
    # multiplier 0.5 doubling, plus up to 0.5 jitter: [0.5, 1), [1, 1.5), [2, 2.5)
    for wait, low in zip(sleeps.waits, [0.5, 1.0, 2.0], strict=True):
        assert low <= wait < low + 0.5


async def test_500_then_success() -> None:
    sleeps = Sleeps()
    server = FakeOpenAI(script=[Step(status=503), Step(status=500), Step(text="third time")])
    async with server.running() as url:
        model = remote(url, sleeps)
        completion = await model.complete(MESSAGES)
        await model.close()
    assert completion.text == "third time" and len(sleeps.waits) == 2


async def test_401_is_not_retried_and_names_the_setting() -> None:
    server = FakeOpenAI(script=[Step(status=401)])
    async with server.running() as url:
        model = remote(url, Sleeps())
        with pytest.raises(LLMError, match=r"HTTP 401 \(check llm.remote.api_key\)"):
            await model.complete(MESSAGES)
        await model.close()
    assert len(server.requests) == 1


async def test_slow_response_times_out_and_is_retried() -> None:
    sleeps = Sleeps()
    server = FakeOpenAI(script=[Step(delay=2.0, text="too late"), Step(text="in time")])
    async with server.running() as url:
        model = remote(url, sleeps, read_timeout_seconds=0.3)
        with collect_notes() as notes:
            completion = await model.complete(MESSAGES)
        await model.close()
    assert completion.text == "in time"
    assert notes["retries"][0].startswith("timeout (ReadTimeout)")


async def test_always_slow_server_fails_with_a_clear_error() -> None:
    server = FakeOpenAI(default=Step(delay=2.0))
    async with server.running() as url:
        model = remote(url, Sleeps(), read_timeout_seconds=0.2, attempts=2)
        with pytest.raises(LLMError, match=r"timeout \(ReadTimeout\) after 2 attempt\(s\)"):
            await model.complete(MESSAGES)
        await model.close()


async def test_stream_yields_the_server_sent_pieces_in_order() -> None:
    server = FakeOpenAI(default=Step(pieces=["Use ", "pip ", "install ", "mmdet", "。"]))
    async with server.running() as url:
        model = remote(url)
        pieces = [piece async for piece in model.stream(MESSAGES, max_tokens=16)]
        await model.close()
    assert pieces == ["Use ", "pip ", "install ", "mmdet", "。"]
    assert server.requests[0]["stream"] is True


async def test_stream_is_retried_before_its_first_token_only() -> None:
    sleeps = Sleeps()
    server = FakeOpenAI(
        script=[Step(status=429, retry_after="1"), Step(pieces=["a", "b", "c"], break_after=1)]
    )
    async with server.running() as url:
        model = remote(url, sleeps)
        received: list[str] = []
        with pytest.raises(LLMError, match="stream broke off"):
            async for piece in model.stream(MESSAGES):
                received.append(piece)
        await model.close()
    assert sleeps.waits == [1.0]
    assert received == ["a"]  # no silent restart mid-answer
    assert len(server.requests) == 2


async def test_prompt_longer_than_max_context_is_refused_before_sending() -> None:
    server = FakeOpenAI()
    async with server.running() as url:
        model = remote(url, max_context=512)
        long: Any = [{"role": "user", "content": "word " * 2000}]
        with pytest.raises(ContextTooLong):
            await model.complete(long, max_tokens=16)
        await model.close()
    assert server.requests == []


async def test_requests_per_minute_budget_fails_fast_when_the_wait_is_too_long() -> None:
    server = FakeOpenAI()
    async with server.running() as url:
        model = remote(url, requests_per_minute=2, max_wait_seconds=1)
        await model.complete(MESSAGES)
        await model.complete(MESSAGES)
        with pytest.raises(RateLimited, match="per-minute budget"):
            await model.complete(MESSAGES)
        await model.close()
    assert len(server.requests) == 2


async def test_scoring_parses_text_and_passes_extra_body() -> None:
    server = FakeOpenAI(script=[Step(text="Score: 8/10"), Step(text="I cannot rate that")])
    async with server.running() as url:
        model = remote(url, score_extra_body={"guided_choice": [str(i) for i in range(11)]})
        good = await score(model, MESSAGES)
        bad = await score(model, MESSAGES)
        await model.close()
    assert good.value == 8 and good.method == "text"
    assert bad.value is None and bad.method == "unreadable"
    assert server.requests[0]["guided_choice"][-1] == "10"
    assert server.requests[0]["temperature"] == 0.0


async def test_the_api_key_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = FakeOpenAI(script=[Step(status=500), Step(text="fine")])
    async with server.running() as url:
        model = remote(url, Sleeps())
        await model.complete(MESSAGES)
        await model.close()
    assert "sk-test-secret" not in caplog.text
    assert "sk-test-secret" not in repr(model.settings)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_local_gguf_gives_exact_token_counts_for_a_remote_model() -> None:
    from bot.llm.llama_cpp import LlamaCppChatModel, bundled_model_path

    settings = RemoteLLMSettings(tokenizer=bundled_model_path())
    model = OpenAICompatibleChatModel(settings)
    local = LlamaCppChatModel(LLMSettings())
    text = "如何安装 mmdetection? pip install mmdet==3.3.0"
    assert model.count_tokens(text) == local.count_tokens(text)
    estimated = OpenAICompatibleChatModel(RemoteLLMSettings())
    assert estimated.count_tokens(text) >= model.count_tokens(text)  # the estimate errs high


async def test_a_credential_in_the_base_url_is_sent_but_never_shown(
    config_factory: Any, bot_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """``https://user:key@host/v1`` (a proxy's basic auth): the server gets the credential,
    the trace, the log, doctor's lines and /healthz never show it."""
    import base64

    import httpx

    from bot.app.server import create_app
    from tests.fakes import RecordingAdapter, make_message

    key = "sk-in-the-url-4c2e"
    server = FakeOpenAI(default=Step(text="fine"))
    async with server.running() as url:
        base_url = url.replace("http://", f"http://proxyuser:{key}@")
        config = config_factory(
            {"llm": {"backend": "openai", "remote": {"base_url": base_url, "attempts": 1}}}
        )
        assert key not in config.llm.remote.safe_base_url
        model = OpenAICompatibleChatModel(config.llm.remote, config.llm)
        bot = await bot_factory(config, [RecordingAdapter()], model)
        answered = await bot.inbox.receive(make_message(text="How do I install mmdet?"))
        await bot.join()
    # The server is gone: the error names where the model was, without the key.
    failed = await bot.inbox.receive(make_message(text="And mmcv?"))
    await bot.join()
    transport = httpx.ASGITransport(app=create_app(bot))
    async with httpx.AsyncClient(transport=transport, base_url="http://bot.test") as client:
        health = (await client.get("/healthz")).text
    expected = "Basic " + base64.b64encode(f"proxyuser:{key}".encode()).decode()
    assert server.headers[0]["authorization"] == expected
    assert (await bot.inbox.message_view(answered.id))["status"] == "answered"
    view = await bot.inbox.message_view(failed.id)
    assert view["status"] == "failed"
    generate = next(step for step in view["trace"] if step["name"] == "generate")
    assert generate["verdict"].startswith("error: ") and f"to {url}" in generate["verdict"]
    assert key not in str(view) and key not in health and key not in caplog.text


# -- answers that must never pass as whole ones ---------------------------------------------

# What each broken stream (tests/llm/fake_servers.py) raises, and says.
STREAM_ERRORS: dict[str, tuple[type[LLMError], str]] = {
    "no [DONE]": (BrokenAnswer, "without \\[DONE\\]"),
    "no finish_reason": (BrokenAnswer, "without a finish reason"),
    "length": (Truncated, "max_tokens"),
    "content_filter": (BrokenAnswer, "finish_reason content_filter"),
    "NUL": (BrokenAnswer, "control character U\\+0000"),
    "special token": (BrokenAnswer, "<\\|im_end\\|>"),
    "U+FFFD run": (BrokenAnswer, "U\\+FFFD"),
    "data: 42": (BrokenAnswer, "malformed stream chunk '42'"),
    "choices as a string": (BrokenAnswer, "malformed stream chunk"),
    "content as a number": (BrokenAnswer, "malformed stream chunk"),
    "error mid-stream": (BrokenAnswer, "overloaded"),
    "connection dropped": (BrokenAnswer, "broke off"),
}


@pytest.mark.parametrize("fault", BROKEN_STREAMS)
async def test_a_stream_that_is_not_a_whole_answer_raises_the_llm_error(fault: str) -> None:
    error, match = STREAM_ERRORS[fault]
    server = FakeOpenAI(script=[BROKEN_STREAMS[fault]])
    async with server.running() as url:
        model = remote(url, Sleeps())
        with pytest.raises(error, match=match):
            [piece async for piece in model.stream(MESSAGES)]
        await model.close()


async def test_a_whole_stream_notes_its_finish_reason_and_token_count() -> None:
    server = FakeOpenAI(script=[Step(pieces=["Use ", "pip ", "install."])])
    async with server.running() as url:
        model = remote(url)
        with collect_notes() as notes:
            pieces = [piece async for piece in model.stream(MESSAGES)]
        await model.close()
    assert pieces == ["Use ", "pip ", "install."]
    # No usage in the stream: a piece is a token.
    assert notes == {"finish_reason": "stop", "completion_tokens": 3}


COMPLETE_FAULTS = {
    "content_filter": (Step(text="Use", finish_reason="content_filter"), "content_filter"),
    "no finish_reason": (Step(text="Use pip.", finish_reason=None), "without a finish reason"),
    "special token": (Step(text="Use pip.<|eot_id|>"), "<\\|eot_id\\|>"),
    "control character": (Step(text="Use \x1b[31mpip"), "control character U\\+001B"),
    "choices as a string": (Step(raw=['{"choices": "abc"}']), "not a chat completion"),
    "not JSON": (Step(raw=["<html>busy</html>"]), "not a chat completion"),
    "no choices": (Step(raw=['{"choices": []}']), "not a chat completion"),
}


@pytest.mark.parametrize("fault", COMPLETE_FAULTS, ids=list(COMPLETE_FAULTS))
async def test_a_completion_that_is_not_a_whole_answer_raises_the_llm_error(fault: str) -> None:
    step, match = COMPLETE_FAULTS[fault]
    server = FakeOpenAI(script=[step])
    async with server.running() as url:
        model = remote(url, Sleeps())
        with pytest.raises(BrokenAnswer, match=match):
            await model.complete(MESSAGES)
        await model.close()


async def test_a_completion_cut_at_max_tokens_says_so() -> None:
    server = FakeOpenAI(default=Step(text="one two three four five"))
    async with server.running() as url:
        model = remote(url)
        completion = await model.complete(MESSAGES, max_tokens=2)
        await model.close()
    assert (completion.text, completion.finish_reason) == ("one two", "length")


async def test_a_prompt_the_server_finds_too_long_is_context_too_long() -> None:
    error = {
        "error": {"message": "maximum context length is 1024", "code": "context_length_exceeded"}
    }
    server = FakeOpenAI(script=[Step(status=400, raw=[json.dumps(error)])])
    async with server.running() as url:
        model = remote(url, Sleeps())
        with pytest.raises(ContextTooLong, match="maximum context length"):
            await model.complete(MESSAGES)
        await model.close()
