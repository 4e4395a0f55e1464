"""The webhook and sender as an attacker and a bad day see them: no padding oracle, authentic
garbage refused once (never a redelivery loop), quiet logs, a slow token endpoint that stalls
nothing, and message ids that cannot steer a reply URL."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import httpx
import pytest
from lark_oapi.core.token import TokenManager

from adapters.common.webhook import LOG_BURST
from tests.adapters.feishu.conftest import (
    ENCRYPT_KEY,
    VERIFICATION_TOKEN,
    FeishuBot,
    MakeFeishuBot,
)
from tests.adapters.feishu.fake_feishu import encrypt, load_event, signed_request

pytestmark = pytest.mark.integration


def event(fb: FeishuBot, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault("token", VERIFICATION_TOKEN)
    return load_event("text_group.json", app_id=fb.fake.app_id, **overrides)


def noisy(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    """Log records an operator would call noise: errors, and anything with a traceback."""
    return [r for r in records if r.levelno >= logging.ERROR or r.exc_info]


def tampered_ciphertexts(ciphertext: bytes) -> list[bytes]:
    """What a padding-oracle attacker sends: bytes flipped in every block (every byte of the
    last two, where the padding is decided), truncations, and odd lengths."""
    blocks = len(ciphertext) // 16
    variants = []
    for block in range(blocks):
        positions = range(16) if block >= blocks - 2 else {block % 16, 0, 15}
        for position in positions:
            changed = bytearray(ciphertext)
            changed[block * 16 + position] ^= 0x01 + block % 7
            variants.append(bytes(changed))
    for size in (16, 32, 48, len(ciphertext) - 16, len(ciphertext) - 1, len(ciphertext) + 5):
        variants.append((ciphertext + b"\0" * 5)[:size])
    return variants


async def test_no_padding_oracle(
    feishu_bot: MakeFeishuBot, caplog: pytest.LogCaptureFixture
) -> None:
    """Every modified ciphertext of a captured event, signed headers kept or dropped, and
    re-padded ones (valid padding, wrong content) get byte-identical answers."""
    fb = await feishu_bot()
    headers, body = signed_request(event(fb), ENCRYPT_KEY)  # captured on the wire
    ciphertext = base64.b64decode(json.loads(body)["encrypt"])
    payloads = [
        json.dumps({"encrypt": base64.b64encode(c).decode()}).encode()
        for c in tampered_ciphertexts(ciphertext)
    ]
    # Re-padded: valid PKCS7 under the real key, but no event (what a successful oracle
    # attack would be probing for), and a ciphertext that is not base64 at all.
    for plaintext in (b"garbage", b"{}", b'{"type": "url_verification"}', b"[1]"):
        payloads.append(json.dumps({"encrypt": encrypt(plaintext, ENCRYPT_KEY)}).encode())
    payloads.append(b'{"encrypt": "%%% not base64 %%%"}')
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="adapters")
    answers = set()
    async with httpx.AsyncClient(timeout=10) as client:
        for payload in payloads:
            for sent_headers in (headers, {"Content-Type": "application/json"}):
                response = await client.post(fb.webhook_url, content=payload, headers=sent_headers)
                answers.add((response.status_code, response.content))
    requests = 2 * len(payloads)
    assert requests > 300
    assert answers == {(401, b'{"code":401,"msg":"refused"}')}
    await fb.bot.join()
    assert await fb.messages() == [] and fb.fake.sent == []
    # One line at most per request, and a bounded number in all.
    assert len(caplog.records) <= LOG_BURST + 1
    assert noisy(caplog.records) == []


@pytest.mark.parametrize(
    "garbage",
    [
        {"message_id": ["om_1", "om_2"]},
        {"message_id": {"id": "om_1"}},
        {"chat_id": ["oc_1"]},
        {"message_id": "om_" + "x" * 300},
        {"sender_id": {"open_id": {"nested": True}}},
        {"mentions": [{"key": "@_user_1", "id": ["ou_1"], "name": "x"}]},
        {"parent_id": {"id": "om_1"}},
        {"root_id": ["om_1"]},
    ],
    ids=[
        "list-id",
        "dict-id",
        "list-chat",
        "long-id",
        "dict-sender",
        "list-mention-id",
        "dict-parent",
        "list-root",
    ],
)
async def test_authentic_events_with_garbage_are_refused_once_not_retried_forever(
    feishu_bot: MakeFeishuBot, caplog: pytest.LogCaptureFixture, garbage: dict[str, Any]
) -> None:
    fb = await feishu_bot()
    bad = event(fb)
    if "sender_id" in garbage:
        bad["event"]["sender"]["sender_id"] = garbage["sender_id"]
    else:
        bad["event"]["message"].update(garbage)
    caplog.clear()
    for _ in range(3):  # Feishu redelivers what fails: each time the same 400, not a 503
        response = await fb.post(bad)
        assert response.status_code == 400, response.text
        assert response.json() == {"code": 400, "msg": "bad request"}
    refusals = [r for r in caplog.records if "refused a request" in r.getMessage()]
    assert len(refusals) == 3
    assert all("cannot be read" in r.getMessage() for r in refusals)
    assert noisy(caplog.records) == []
    await fb.bot.join()
    assert await fb.messages() == []


async def test_authentic_garbage_over_the_websocket_is_acked_and_dropped(
    feishu_bot: MakeFeishuBot, caplog: pytest.LogCaptureFixture
) -> None:
    fb = await feishu_bot("websocket")
    await fb.fake.wait_for(lambda: fb.fake.connected)
    bad = event(fb, message_id=["om_1"])
    caplog.clear()
    frame = await fb.fake.push_event(bad)
    await fb.fake.wait_for(lambda: fb.fake.ack_for(frame) is not None)
    assert fb.fake.ack_for(frame)["code"] == 200  # acked: Feishu does not send it again
    dropped = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(dropped) == 1 and noisy(caplog.records) == []
    # Still answering after it.
    await fb.fake.push_event(event(fb))
    await fb.fake.wait_for(lambda: len(fb.fake.sent) == 1)
    await fb.bot.join()
    assert [m["status"] for m in await fb.messages()] == ["answered"]


@pytest.mark.parametrize(
    "stamp", ["nan", "inf", "1e9", "-5", "+1700000000", "0x1F", "", "12345678901234"]
)
async def test_timestamps_that_are_not_plain_digits_are_refused(
    feishu_bot: MakeFeishuBot, stamp: str
) -> None:
    fb = await feishu_bot()
    headers, body = signed_request(event(fb), ENCRYPT_KEY)
    headers["X-Lark-Request-Timestamp"] = stamp
    response = await fb.post_raw(body, headers)
    assert response.status_code == 401
    assert response.content == b'{"code":401,"msg":"refused"}'
    assert await fb.messages() == []


async def test_a_slow_token_endpoint_stalls_neither_acks_nor_the_database(
    feishu_bot: MakeFeishuBot,
) -> None:
    """The token expires and the endpoint hangs: the sends wait on one shared fetch while
    new events are still stored and acked (they never touch the platform's API)."""
    fb = await feishu_bot()
    TokenManager.cache.set(f"self_tenant_token:{fb.fake.app_id}", "", 0)  # expired
    fb.fake.token_hold = asyncio.Event()
    before = fb.fake.token_requests

    first = [event(fb, chat_id=f"oc_first_{i}") for i in range(8)]
    assert {(await fb.post(e)).status_code for e in first} == {200}
    await fb.fake.wait_for(lambda: fb.fake.token_requests == before + 1)
    for _ in range(500):  # every answer stored and waiting for the token
        if [m["status"] for m in await fb.messages()] == ["replying"] * 8:
            break
        await asyncio.sleep(0.02)
    assert [m["status"] for m in await fb.messages()] == ["replying"] * 8

    later = [event(fb, chat_id=f"oc_later_{i}") for i in range(8)]
    responses = await asyncio.gather(*(fb.post(e) for e in later))
    assert [r.status_code for r in responses] == [200] * 8
    assert fb.fake.token_requests == before + 1  # one fetch, shared

    fb.fake.token_hold.set()
    await fb.fake.wait_for(lambda: len(fb.fake.sent) == 16)
    await fb.bot.join()
    assert {m["status"] for m in await fb.messages()} == {"answered"}
    assert fb.fake.token_requests == before + 1


async def test_reply_urls_carry_the_message_id_encoded(feishu_bot: MakeFeishuBot) -> None:
    """An id with URL syntax in it stays one path segment: it cannot walk to another API or
    add a query."""
    fb = await feishu_bot()
    odd = "om_a/../../bot/v3/info?x=1#y z"
    assert (await fb.post(event(fb, message_id=odd))).status_code == 200
    await fb.fake.wait_for(lambda: len(fb.fake.sent) == 1)
    [sent] = fb.fake.sent
    assert sent.kind == "reply" and sent.target == odd
    [path] = fb.fake.paths
    assert (
        path == "/open-apis/im/v1/messages/om_a%2F..%2F..%2Fbot%2Fv3%2Finfo%3Fx%3D1%23y%20z/reply"
    )
