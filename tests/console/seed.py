"""Stored messages for the console's tests: many at once, shaped like a real deployment's, for
the message log's tests and its benchmark (bench/console_log_bench.py): several platforms and
groups, mostly silence for a handful of reasons, some answers with replies, a few failures,
spread over weeks; and a few with everything that makes a page wide (``realistic``)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from bot.message import Message, Reference, Reply
from bot.storage import repo
from bot.storage.db import Database
from bot.storage.models import (
    Conversation,
    MessageRecord,
    MessageStatus,
    ReplyRecord,
    ReplyStatus,
)

PLATFORMS = ["feishu", "feishu", "feishu", "dingtalk", "wecom", "playground"]
# (status, decision, share)
OUTCOMES = [
    ("ignored", "ignored: off-topic", 0.45),
    ("ignored", "ignored: not-mentioned", 0.12),
    ("ignored", "ignored: empty", 0.05),
    ("ignored", "ignored: no-knowledge", 0.04),
    ("ignored", "ignored: chitchat", 0.02),
    ("ignored", "merged into #{prev}", 0.02),
    ("ignored", "ignored: overloaded (100 messages already waiting in this conversation)", 0.002),
    ("answered", "answered", 0.27),
    ("failed", "failed: TimeoutError: the model did not answer in 60 s", 0.018),
    ("expired", "ignored: expired (left processing by a restart and older than 30 min)", 0.01),
]
TEXTS = [
    "早上好各位[旺柴]",
    "How do I install MMFoo with pip on Windows?",
    "哈哈哈哈 笑死",
    "训练的时候报错 CUDA out of memory 怎么办？",
    'Traceback (most recent call last):\n  File "train.py", line 12, in <module>\n'
    "    from mmfoo.apis import train_model\nImportError: cannot import name 'train_model'",
    "see https://mmfoo.readthedocs.io/en/latest/advanced_guides/customize_runtime.html#hooks",
    "ok thanks",
]


def trace_for(decision: str, rng: random.Random) -> list[dict[str, Any]]:
    """A trace of realistic size: normalize, and the gate with its 25 features."""
    features = {f"feature_{i}": round(rng.random(), 4) for i in range(25)}
    steps: list[dict[str, Any]] = [
        {
            "name": "normalize",
            "verdict": "pass",
            "score": None,
            "threshold": None,
            "ms": 0.05,
            "detail": {"language": "zh", "chars": 12, "merged": 0, "truncated": False},
        },
        {
            "name": "reject.embedding",
            "verdict": decision if "off-topic" in decision else "pass",
            "score": round(rng.random(), 4),
            "threshold": 0.5,
            "ms": 12.5,
            "detail": {"gate": "learned", "features": features, "contributions": features},
        },
    ]
    return steps


def seed(
    database: Database,
    messages: int,
    *,
    groups: int = 200,
    days: int = 60,
    seed_value: int = 0,
    now: datetime | None = None,
    batch: int = 5000,
) -> dict[str, int]:
    """Insert ``messages`` messages (and a reply for each answered one), oldest first; returns
    how many got each decision."""
    rng = random.Random(seed_value)
    now = now or datetime.now(UTC)
    start = now - timedelta(days=days)
    counts: dict[str, int] = {}
    with database.engine.begin() as connection:
        conversations = [
            {
                "id": i + 1,
                "platform": PLATFORMS[i % len(PLATFORMS)],
                "platform_conversation_id": f"oc_group_{i:04d}",
                "conversation_type": "group",
                "created_at": start,
            }
            for i in range(groups)
        ]
        connection.execute(insert(Conversation), conversations)
        weights = [share for *_, share in OUTCOMES]
        step = timedelta(days=days) / max(messages, 1)
        rows: list[dict[str, Any]] = []
        replies: list[dict[str, Any]] = []
        for i in range(messages):
            message_id = i + 1
            conversation = conversations[rng.randrange(groups)]
            status, decision, _ = rng.choices(OUTCOMES, weights)[0]
            decision = decision.format(prev=max(message_id - 1, 1))
            key = "merged" if decision.startswith("merged") else decision
            counts[key] = counts.get(key, 0) + 1
            when = start + step * i
            rows.append(
                {
                    "id": message_id,
                    "platform": conversation["platform"],
                    "platform_message_id": f"om_{message_id:08d}",
                    "conversation_id": conversation["id"],
                    "sender_id": f"ou_{rng.randrange(500):04d}",
                    "sender_name": f"member {rng.randrange(500)}",
                    "text": rng.choice(TEXTS),
                    "mentioned_bot": rng.random() < 0.2,
                    "sent_at": when,
                    "received_at": when,
                    "updated_at": when,
                    "status": status,
                    "decision": decision,
                    "trace": trace_for(decision, rng),
                    "raw": {},
                    "merged_into_id": None,
                }
            )
            if status == "answered":
                replies.append(
                    {
                        "message_id": message_id,
                        "text": "pip install mmfoo, then check with mmfoo.__version__ [1]",
                        "references": [{"source": "docs/install.md", "title": "Install"}],
                        "mentions": [],
                        "status": "sent",
                        "attempts": 1,
                        "created_at": when,
                        "sent_at": when,
                    }
                )
            if len(rows) >= batch:
                connection.execute(insert(MessageRecord), rows)
                rows = []
        if rows:
            connection.execute(insert(MessageRecord), rows)
        for part in range(0, len(replies), batch):
            connection.execute(insert(ReplyRecord), replies[part : part + batch])
    return counts


# -- a few messages with everything that makes a page wide: long traces, URLs, code, Chinese --

GROUP = "oc_9f8e7d6c5b4a39281706f5e4d3c2b1a0_feishu_group_with_a_long_id"
LONG_URL = (
    "https://mmdetection.readthedocs.io/zh-cn/latest/user_guides/"
    "train.html?highlight=resume_from_checkpoint_and_auto_scale_lr_settings_for_multi_node"
    "#resume-training-from-a-checkpoint-with-the-same-config-and-work-dir"
)
TRACEBACK = (
    "训练时报错，怎么解决？\n"
    "Traceback (most recent call last):\n"
    '  File "/home/zhangwei/miniconda3/envs/openmmlab/lib/python3.10/site-packages/mmcv/ops/'
    'multi_scale_deform_attn.py", line 209, in multi_scale_deformable_attention_forward_cuda\n'
    "RuntimeError: CUDA error: an illegal memory access was encountered; "
    "CUDA_LAUNCH_BLOCKING=1_TORCH_USE_CUDA_DSA_for_device_side_assertions_and_more_details"
)
GATE_FEATURES = [
    "kb_dense_max", "kb_dense_topk", "kb_bm25_max", "title_max", "title_top5", "log_chars",
    "question_mark", "ask_words", "help_words", "code_marks", "latin_share", "tech_tokens",
    "stickers", "laughter", "sentences", "zh", "mentioned", "good_top1", "good_topk",
    "bad_top1", "bad_topk", "good_minus_bad", "good_centroid", "bad_centroid", "centroid_diff",
]  # fmt: skip


def _step(name: str, verdict: str = "pass", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "verdict": verdict,
        "score": fields.pop("score", None),
        "threshold": fields.pop("threshold", None),
        "ms": fields.pop("ms", 1.5),
        "detail": fields,
    }


def _gate(score: float, silent: bool, bad_first: bool) -> dict[str, Any]:
    rng = random.Random(int(score * 1000))
    sign = -1 if silent else 1
    contributions = {n: round(sign * rng.uniform(-0.2, 0.9), 4) for n in GATE_FEATURES}
    return _step(
        "reject.embedding",
        "ignored: off-topic" if silent else "pass",
        score=score,
        threshold=0.4871,
        ms=38.2,
        gate="learned",
        features={n: round(rng.random(), 4) for n in GATE_FEATURES},
        contributions=contributions,
        nearest_good=[
            {"text": "如何从断点恢复训练？resume_from 参数怎么设置", "similarity": 0.52}
        ],
        nearest_bad=[
            {
                "text": "早上好[旺柴] 今天也要加油哦" if bad_first else "哈哈哈",
                "similarity": 0.91 if bad_first else 0.31,
            }
        ],
    )


def realistic(database: Database) -> dict[str, int]:
    """Store a Feishu group's conversation through the real write path (repo), returning the
    ids of its messages by role."""
    ids: dict[str, int] = {}

    def message(text: str, sender: str, key: str) -> int:
        stored = database.run_sync(
            repo.insert_message,
            Message(
                platform="feishu",
                conversation_id=GROUP,
                sender_id=f"ou_{sender}",
                sender_name=sender,
                text=text,
                platform_message_id=f"om_{key}_{random.random()}",
            ),
        )
        ids[key] = stored.id
        return stored.id

    silent = message("早上好各位[旺柴] 今天也要加油哦", "张伟", "chitchat")
    database.run_sync(
        repo.set_status,
        [silent],
        MessageStatus.IGNORED,
        decision="ignored: off-topic",
        trace=[_step("normalize", language="zh", chars=16), _gate(0.0312, True, True)],
    )
    asked = message(TRACEBACK, "li.lei", "question")
    hits = [
        {
            "source": LONG_URL if i % 2 else f"docs/zh_cn/user_guides/very/deep/path/train_{i}.md",
            "title": f"训练 > 从断点恢复 > 第 {i} 节 Resume training from a checkpoint",
            "score": round(0.8 - i * 0.05, 4),
            "scores": {"dense": 0.71, "bm25": 12.5, "fused": 0.8},
        }
        for i in range(8)
    ]
    trace = [
        _step("normalize", language="zh", chars=len(TRACEBACK)),
        _gate(0.9312, False, False),
        _step("retrieve", score=0.71, threshold=0.15, ms=52.0, hits=hits, collection=None),
        _step(
            "generate",
            ms=8123.4,
            model="smollm2-135m",
            completion_tokens=187,
            prompt=TRACEBACK * 3,
        ),
        _step("cite", references=2, method="markers", sources=[LONG_URL, hits[0]["source"]]),
    ]
    reply = Reply(
        text=f"设置 resume=True 并指定 load_from，详见 {LONG_URL} [1]\n```python\n"
        "runner = Runner.from_cfg(cfg)  # " + "x" * 200 + "\n```",
        references=(
            Reference(source=LONG_URL, title="从断点恢复训练", url=LONG_URL),
            Reference(source=str(hits[0]["source"]), title=str(hits[0]["title"])),
        ),
    )
    reply_id = database.run_sync(repo.store_reply, asked, reply, "answered", trace)
    database.run_sync(repo.mark_reply, reply_id, status=ReplyStatus.SENT, attempts=1)
    database.run_sync(repo.set_status, [asked], MessageStatus.ANSWERED)
    link = message(LONG_URL, "王芳", "link")
    database.run_sync(
        repo.set_status,
        [link],
        MessageStatus.IGNORED,
        decision="ignored: no-knowledge",
        trace=[
            _step("normalize"),
            _gate(0.61, False, False),
            _step("retrieve", "ignored: no-knowledge", score=0.08, threshold=0.15, hits=hits[:3]),
        ],
    )
    broken = message("mmcv 和 mmdet 版本怎么对应？", "赵六", "failed")
    database.run_sync(
        repo.set_status,
        [broken],
        MessageStatus.FAILED,
        decision="failed: TimeoutError: the model did not answer within 60 s",
        trace=[_step("normalize"), _step("generate", "error: TimeoutError: no answer in 60 s")],
    )
    return ids
