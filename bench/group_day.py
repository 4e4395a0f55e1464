"""A synthetic day of group chat through the playground API: how the group manners behave.

Many groups chat from 07:00 to 23:00 (Asia/Shanghai) in bursts; about 85% of the messages are
chitchat, the rest questions about the fixture toolbox (tests/gate/data), some asked again
later, some answered by a member before the bot's hold ends (or after), some @-mentioning the
bot. Every message is posted in time order to ``POST /api/messages`` of the real core and the
playground adapter (in process, through httpx's ASGI transport) with the bot's clock set to the
message's time; held replies due by then are released first. The pipeline is the shipped one
(normalize, gate, reject.embedding, retrieve, guard, generate, cite) over the fixture knowledge
base with its example questions, and a scripted model that answers at once.

Prints: bot messages per group per hour, the share of messages each manner kept the bot quiet
on (or answered with a pointer), how the questions members answered came out, and the decision
latency (wall time of a POST with ``"wait": true``, i.e. until the reply is decided or held).

    nice .venv/bin/python bench/group_day.py [--groups 12] [--seed 7] [--work /tmp/group-day]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from starlette.applications import Starlette

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapters.playground.adapter import PlaygroundAdapter, PlaygroundSettings  # noqa: E402
from bot.adapter import AdapterEnvironment  # noqa: E402
from bot.app.services import build_services  # noqa: E402
from bot.config import Config, load_config  # noqa: E402
from bot.runtime import Bot  # noqa: E402
from bot.storage import groups  # noqa: E402
from bot.storage.db import Database  # noqa: E402
from knowledge.knowledge_base import KnowledgeBase  # noqa: E402

DATA = REPO / "tests" / "gate" / "data"
# 07:00 in Shanghai, Wednesday 2 December 2026.
DAY = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
HOURS = 16
PIPELINE = ["normalize", "gate", "reject.embedding", "retrieve", "guard", "generate", "cite"]
SMALL_BUDGET = 3

QUESTIONS = [
    "How do I install mmfoo with pip?", "pip install mmfoo fails building mmcv wheels, help?",
    "Which Python versions does mmfoo support?", "How can I resume training from a checkpoint?",
    "训练的时候 CUDA out of memory 了怎么办？", "mmfoo 怎么导出 ONNX 模型？",
    "导出 ONNX 报 Unsupported operator 怎么解决？",
    "How should I change the learning rate for 2 GPUs?",
    "train.py 的 --work-dir 是干什么的？", "mmfoo 能用 TensorRT 部署吗？",
    "How do I build mmfoo from source?", "mmfoo 需要哪个版本的 PyTorch？",
    "Does mmfoo support mixed precision training?", "TensorRT 的 FP16 推理能快多少？",
    "Where does training save the checkpoints?", "怎么从上次的断点继续训练？",
    "How do I export to ONNX with dynamic shapes?", "安装 mmfoo 时编译 mmcv 失败怎么办？",
    "What batch size fits on a 12 GB GPU?", "部署到 TensorRT 需要先转 ONNX 吗？",
]  # fmt: skip
CHITCHAT = [
    "哈哈哈哈", "早上好各位", "今天中午吃什么", "Good morning everyone!", "lol that's hilarious",
    "周末有人去爬山吗", "明天是不是要下雨", "有人看昨晚的球赛了吗？", "我先下线了，晚点聊",
    "Who's up for coffee?", "最近房价是不是又跌了", "See you all tomorrow", "晚安", "+1",
    "收到", "好的好的", "[旺柴][旺柴]", "nice!", "哈哈 笑死", "下班了吗", "这个表情包绝了",
    "anyone going to the meetup?", "会议改到三点了", "谁有充电宝", "辛苦啦", "太强了",
    "ok", "周五团建去哪", "我也是", "haha same", "冲冲冲", "外卖到了", "明天见",
]  # fmt: skip
HUMAN_ANSWERS = [
    "pip install mmfoo 就行，记得先装对应 CUDA 的 mmcv",
    "use tools/train.py with --resume, it picks up the last checkpoint",
    "导出用 tools/export.py，opset 选 11 以上",
    "reduce the batch size, or turn on mixed precision",
]


@dataclass(order=True)
class Event:
    at: datetime
    seq: int
    group: str = field(compare=False)
    sender: str = field(compare=False)
    text: str = field(compare=False)
    kind: str = field(compare=False)  # question, chitchat, answer
    mentioned: bool = field(default=False, compare=False)
    message_id: str = field(default="", compare=False)
    reply_to: str = field(default="", compare=False)


def synthesize(groups: int, seed: int) -> list[Event]:
    """The day's messages, in time order."""
    rng = random.Random(seed)
    events: list[Event] = []
    seq = 0
    for g in range(groups):
        group = f"oc_group_{g:02d}"
        asked: list[tuple[datetime, str]] = []
        members = [f"{group}_m{i}" for i in range(12)]
        bursts = rng.randint(14, 22)
        for _ in range(bursts):
            start = DAY + timedelta(minutes=rng.uniform(0, HOURS * 60))
            t = start
            for _ in range(rng.randint(5, 22)):
                t += timedelta(seconds=rng.expovariate(1 / 25))
                sender = rng.choice(members)
                seq += 1
                mid = f"{group}-{seq}"
                if rng.random() < 0.15:  # a question
                    if asked and rng.random() < 0.2:
                        earlier_at, text = rng.choice(asked)  # asked again
                        if t - earlier_at > timedelta(hours=2):
                            text = rng.choice(QUESTIONS)
                    else:
                        text = rng.choice(QUESTIONS)
                    asked.append((t, text))
                    event = Event(t, seq, group, sender, text, "question",
                                  mentioned=rng.random() < 0.2, message_id=mid)  # fmt: skip
                    events.append(event)
                    if rng.random() < 0.3:  # a member answers it
                        seq += 1
                        delay = timedelta(seconds=rng.uniform(20, 300))
                        answerer = rng.choice([m for m in members if m != sender])
                        answer = Event(t + delay, seq, group, answerer,
                                       rng.choice(HUMAN_ANSWERS), "answer",
                                       message_id=f"{group}-{seq}", reply_to=mid)  # fmt: skip
                        events.append(answer)
                else:
                    events.append(Event(t, seq, group, sender, rng.choice(CHITCHAT), "chitchat",
                                        message_id=mid))  # fmt: skip
    return sorted(events)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class ScriptedModel:
    """Answers at once, from the first passage it was given."""

    name = "scripted"

    async def warm_up(self) -> None:
        return None

    async def complete(self, messages: list[Any], **kwargs: Any) -> Any:
        from bot.llm.protocol import Completion

        return Completion(text=self._answer(messages), prompt_tokens=10, completion_tokens=8,
                          model=self.name)  # fmt: skip

    async def stream(self, messages: list[Any], **kwargs: Any) -> Any:
        yield self._answer(messages)

    def _answer(self, messages: list[Any]) -> str:
        return "See the installation guide: pip install mmfoo, then run the check [1]."

    async def close(self) -> None:
        return None


def write_config(work: Path, groups: int) -> Path:
    """The shipped pipeline over the fixture knowledge base; the first third of the groups
    have a small reply budget of their own (a per-group override)."""
    shutil.copytree(DATA / "corpus", work / "corpus", dirs_exist_ok=True)
    for name in ("good.json", "bad.json"):
        shutil.copy(DATA / name, work / name)
    small = {"middleware": {"gate": {"budget": {"per_hour": SMALL_BUDGET}}}}
    config = {
        "bot": {"work_dir": "work"},
        "queue": {"debounce_seconds": 0},
        "pipeline": PIPELINE,
        "middleware": {"gate": {"timezone": "Asia/Shanghai", "working_hours": ["08:00-22:00"]}},
        "groups": {f"oc_group_{g:02d}": small for g in range(groups // 3)},
        "knowledge": {"sources": [{"path": "corpus"}]},
        "rejection": {
            "good_questions": "good.json",
            "bad_questions": "bad.json",
            "chitchat_share": 0.85,
        },
    }
    path = work / "bot.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


async def release_until(bot: Bot, clock: Clock, until: datetime) -> None:
    """Release the held replies due by ``until`` one time at a time, each at its own time, so
    each sees exactly the messages posted before it."""
    while True:
        due = await bot.db.run(groups.due_held, until)
        if not due:
            return
        clock.now = max(clock.now, min(held.not_before for held in due))
        await bot.release_held()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def prepare(args: argparse.Namespace) -> Config:
    """The work folder: the fixture knowledge base indexed, and an empty database."""
    work: Path = args.work
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    config = load_config(write_config(work, args.groups))
    kb = KnowledgeBase.open(config.knowledge, config.work_dir)
    kb.build(progress=False)
    kb.close()
    for stale in ("bot.db", "bot.db-wal", "bot.db-shm"):
        (config.work_dir / stale).unlink(missing_ok=True)
    return config


async def run(args: argparse.Namespace, config: Config) -> None:
    database = Database(config.database_url)
    database.upgrade()
    clock = Clock(DAY)
    services = build_services(config, llm=ScriptedModel())  # type: ignore[arg-type]
    services.clock = clock
    adapter = PlaygroundAdapter(PlaygroundSettings(), AdapterEnvironment(config.work_dir, config))
    bot = Bot(services, database, [adapter])
    started = time.perf_counter()
    await bot.start()
    print(f"set-up (index, gate, models): {time.perf_counter() - started:.1f} s", flush=True)
    transport = httpx.ASGITransport(app=Starlette(routes=adapter.admin_routes))
    client = httpx.AsyncClient(transport=transport, base_url="http://playground", timeout=60)

    events = synthesize(args.groups, args.seed)
    ids: dict[str, int] = {}
    kinds: dict[int, str] = {}
    latencies: list[float] = []
    day_started = time.perf_counter()
    for event in events:
        await release_until(bot, clock, event.at)
        clock.now = event.at
        body = {"text": event.text, "sender": event.sender, "conversation_id": event.group,
                "message_id": event.message_id, "mentioned_bot": event.mentioned,
                "reply_to": event.reply_to, "wait": True}  # fmt: skip
        posted = time.perf_counter()
        response = await client.post("/api/messages", json=body)
        latencies.append((time.perf_counter() - posted) * 1000)
        view = response.json()
        ids[event.message_id] = view["id"]
        kinds[view["id"]] = event.kind
    await release_until(bot, clock, events[-1].at + timedelta(hours=1))
    await bot.join()
    day_seconds = time.perf_counter() - day_started

    views = [await bot.inbox.message_view(i) for i in kinds]
    decisions: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    per_hour: Counter[tuple[str, int]] = Counter()
    human_answered = {ids[e.reply_to] for e in events if e.kind == "answer"}
    answered_questions: Counter[str] = Counter()
    for view in views:
        assert view is not None
        decision = view["decision"] or view["status"]
        decisions[decision] += 1
        by_kind[kinds[view["id"]]][decision] += 1
        reply = view["reply"]
        if reply and reply["status"] == "sent" and reply["kind"] != "command":
            posted_at = reply["not_before"] or view["received_at"]
            hour = int((datetime.fromisoformat(posted_at) - DAY).total_seconds() // 3600)
            per_hour[(view["conversation_id"], hour)] += 1
        if view["id"] in human_answered:
            answered_questions[decision] += 1

    total = len(views)
    questions = sum(by_kind["question"].values())
    print(f"\n{args.groups} groups, {total} messages ({questions} questions, "
          f"{sum(by_kind['chitchat'].values())} chitchat, {sum(by_kind['answer'].values())} "
          f"members' answers), replayed in {day_seconds:.0f} s")  # fmt: skip
    small = args.groups // 3
    for label, chosen in [
        (f"budget {SMALL_BUDGET} (per-group override)", range(small)),
        ("budget 20", range(small, args.groups)),
    ]:
        hours = [per_hour[(f"oc_group_{g:02d}", h)] for g in chosen for h in range(HOURS)]
        if hours:
            print(f"bot messages per group per hour, {len(chosen)} groups with {label}: "
                  f"mean {statistics.mean(hours):.2f}, p95 {percentile(hours, 0.95)}, "
                  f"max {max(hours)}")  # fmt: skip
    print("\ndecision                              all    share  questions  chitchat  answers")
    for decision, count in decisions.most_common():
        print(f"{decision:36} {count:5} {count / total:7.1%} {by_kind['question'][decision]:10} "
              f"{by_kind['chitchat'][decision]:9} {by_kind['answer'][decision]:8}")  # fmt: skip
    print(f"\nquestions a member answered ({sum(answered_questions.values())}):")
    for decision, count in answered_questions.most_common():
        print(f"  {decision:34} {count:5}")
    print(f"\ndecision latency: p50 {percentile(latencies, 0.5):.1f} ms, "
          f"p95 {percentile(latencies, 0.95):.1f} ms, max {max(latencies):.1f} ms "
          f"over {len(latencies)} messages")  # fmt: skip
    await client.aclose()
    await bot.stop()
    database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/group-day"))
    parser.add_argument("--fresh", action="store_true", help="rebuild the index and the gate")
    args = parser.parse_args()
    asyncio.run(run(args, prepare(args)))


if __name__ == "__main__":
    main()
