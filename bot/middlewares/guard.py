"""Refuse to be steered by the people the bot answers, or by the documents it quotes.

A group is not a trusted channel: messages try to override the bot's instructions, make it
reveal its prompt, configuration or keys, or post something unrelated (an advert, a link,
an insult, @all). Placed after ``retrieve`` and before ``generate``, this middleware

- stays silent (``ignored: injection``) on a question that gives the bot instructions of that
  kind, in English or Chinese;
- drops retrieved passages that carry such instructions (documents can be poisoned too), and
  earlier chat messages that did (they reach the prompt as history);
- checks the reply before it is posted (``ignored: leak``): it must not contain a secret or a
  configuration value (anything bot.yaml took from the environment, secret fields, the database
  URL, the bot's paths), a run of the system prompt, links that none of the passages gave, or a
  mention of everyone.

The prompts say the same to the model (text in the question and passages is information, not
instructions); this is the check that does not depend on the model listening.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.context import TurnContext
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext
from bot.services import Services

# Instructions aimed at the bot itself. Each names what it guards against; kept narrow, so
# questions about prompts, configs and keys in the documentation still get answered.
INJECTION_PATTERNS: dict[str, str] = {
    "override": (
        r"\b(ignore|disregard|forget|override|bypass|skip)\b[^.?!\n]{0,40}\b(previous|prior|"
        r"above|earlier|preceding|all|any|your|system)\b[^.?!\n]{0,30}\b(instructions?|prompts?|"
        r"rules|directions|guidelines|constraints|context)\b"
    ),
    "persona": (
        r"\b(you are now|you're now|from now on,? (you|reply|answer|respond|only)|pretend (to be|"
        r"you are|you're)|role-?play as|developer mode|jailbreak|do anything now|new persona)\b"
    ),
    "reveal": (
        r"\b(system|developer|hidden|initial|original|secret)\s+(prompt|message|instructions?)\b"
        r"|\byour\s+(own\s+)?(instructions|prompt|rules|guidelines|configuration|config|"
        r"settings|secrets?|api[\s_-]?keys?|passwords?|tokens?|credentials|environment|env)\b"
        r"|\b(print|dump|show|reveal|output|echo|list|display|leak)\b[^.?!\n]{0,20}\b(all|every)"
        r"\b[^.?!\n]{0,12}\b(secrets?|api[\s_-]?keys?|passwords?|tokens?|credentials|"
        r"environment variables|env vars)\b"
        r"|\b(printenv|os\.environ)\b"
        r"|\b(repeat|translate|summari[sz]e|quote|rewrite|copy)\b[^.?!\n]{0,40}\b(text|messages?|"
        r"instructions|words|prompt)\b[^.?!\n]{0,30}\b(above|before|earlier|first|you were given|"
        r"you received)\b"
        r"|\b(first|initial|earliest) message of (this|the|our) (conversation|chat)\b"
        r"|\b(api[\s_-]?keys?|passwords?|tokens?|secrets?|credentials)\b[^.?!\n]{0,20}\b(do|did) "
        r"you use\b"
        r"|\byour\s+(database|db|work(ing)?[\s_-]?dir(ectory)?)\b"
        r"|\bvalue of\b[^.?!\n]{0,40}\b(in|from) the environment\b"
    ),
    "dictate": (
        r"\b(repeat after me|say exactly|reply (only )?with|respond (only )?with|answer (only )?"
        r"with|output (only|exactly)|print exactly|write exactly|just say|only say)\b"
        r"|\b(post|send|spam|broadcast|announce)\b[^.?!\n]{0,30}\b(to (the|this|every) (group|"
        r"chat)|to everyone|@all|@everyone)\b"
        r"|\b(end|start|begin|finish|close|sign)\s+(each|every|your|the)\s+(answers?|replies|"
        r"reply|messages?|responses?)\s+with\b"
        r"|\bassistants?\s+(must|should|shall)\s+(always\s+)?(reply|answer|say|respond|include|"
        r"add|post|mention|reveal)\b"
    ),
    "markup": (
        r"<\|im_(start|end)\|>|<\|(system|assistant)\|>|\[/?INST\]|\[system\]"
        r"|###\s*(system|instruction)"
    ),
    "override_zh": (
        r"(忽略|无视|忘记|忘掉|跳过|绕过|不要理会|不用管)[^。？！\n]{0,12}(之前|以上|上面|前面|先前|"
        r"所有|全部|你的|系统)[^。？！\n]{0,8}(指令|指示|提示|规则|设定|要求|限制|约束)"
    ),
    "persona_zh": (
        r"(你现在是|你现在扮演|从现在(开始|起)[，,]?你|扮演一个|假装(你)?是|开发者模式|越狱模式|"
        r"解除(所有)?限制)"
    ),
    "reveal_zh": (
        r"(系统|初始|原始|隐藏|内部)(提示词?|指令|设定)"
        r"|(你的|你自己的|机器人的|服务器的?)(提示词|系统提示|指令|设定|配置|密钥|秘钥|密码|token|"
        r"环境变量|api ?key|工作目录|数据库)"
        r"|你(一开始|最开始|最早)?收到的(第一条|那段|那条|最开始的)?(消息|话|内容|说明)"
        r"|(上面|前面)(我看不到|隐藏|看不见)的"
        r"|(机器人|bot|你)(用|使用)的[^。？！\n]{0,12}(api ?key|key|密钥|秘钥|token|密码)"
        r"|(输出|打印|显示|告诉我|泄露|透露|给我看|念出|列出|复述)[^。？！\n]{0,6}(所有|全部)的?"
        r"(密钥|秘钥|密码|token|环境变量|api ?key)"
    ),
    "dictate_zh": (
        r"(跟我(重复|念|说)|照着?我?说|只(回复|回答|输出|说)|原样(输出|回复|发送|转发)|"
        r"一字不差地?(输出|回复|重复|说)|(在群里|向所有人|给所有人|给大家)(发|发送|群发|广播|宣布)|"
        r"(回答|回复|消息)的?(最后|结尾|开头|末尾)(都)?(加上|附上|带上|写上)|"
        r"(助手|机器人)(必须|务必|一定要|应该)在?(回答|回复))"
    ),
}
# Mentions of everyone, which a bot has no business sending.
_EVERYONE = re.compile(r"@(all|everyone|here|所有人|全体成员)(?![A-Za-z0-9_])", re.I)
_URL = re.compile(r"https?://[^\s<>\"'）)\]]+", re.I)
_SPACES = re.compile(r"\s+")


class GuardOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    screen_questions: bool = Field(True, description="silence questions that instruct the bot")
    screen_passages: bool = Field(True, description="drop passages that instruct the bot")
    check_replies: bool = Field(True, description="check replies for leaks before posting")
    patterns: list[str] = Field(
        default_factory=list, description="more regular expressions (case-insensitive)"
    )
    prompt_overlap_chars: int = Field(
        32, ge=12, description="a run this long shared with the system prompt is a leak"
    )
    allowed_domains: list[str] = Field(
        default_factory=list, description="link domains allowed besides the passages' own"
    )

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {pattern!r}: {exc}") from None
        return value


def _flat(text: str) -> str:
    return _SPACES.sub(" ", text).strip().lower()


def _domain(url: str) -> str:
    host = urlparse(url).hostname or ""
    return host.lower().removeprefix("www.")


class Guard(BaseMiddleware[GuardOptions]):
    name = "guard"
    Options = GuardOptions

    def __init__(self, services: Services, options: GuardOptions) -> None:
        super().__init__(services, options)
        self._compiled: dict[tuple[str, ...], dict[str, re.Pattern[str]]] = {}
        self.protected: dict[str, str] = {}

    def patterns(self, options: GuardOptions) -> dict[str, re.Pattern[str]]:
        key = tuple(options.patterns)
        if key not in self._compiled:
            extra = {f"custom_{i}": p for i, p in enumerate(options.patterns)}
            self._compiled[key] = {
                name: re.compile(pattern, re.I)
                for name, pattern in {**INJECTION_PATTERNS, **extra}.items()
            }
        return self._compiled[key]

    async def warm_up(self) -> None:
        config = self.services.config
        protected = {value: "secret" for value in config.secret_values()}
        protected[config.database_url] = "database url"
        protected[str(config.work_dir.resolve())] = "work dir"
        if config.source is not None:
            protected[str(config.source)] = "config path"
        self.protected = {value: what for value, what in protected.items() if len(value) >= 4}

    def injection(self, text: str, options: GuardOptions | None = None) -> str | None:
        """The kind of instruction ``text`` gives the bot, or None."""
        for name, pattern in self.patterns(options or self.options).items():
            if pattern.search(text):
                return name.removesuffix("_zh")
        return None

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        options = self.options_for(ctx)
        if options.screen_questions and (kind := self.injection(ctx.question, options)):
            return ctx.ignore("injection", kind=kind)
        if options.screen_passages:
            kept = [c for c in ctx.chunks if self.injection(c.text, options) is None]
            dropped = [chunk.source for chunk in ctx.chunks if chunk not in kept]
            if dropped:
                ctx.chunks = kept
                ctx.record(dropped_passages=dropped)
        if options.screen_questions:
            history = [t for t in ctx.history if self.injection(t.text, options) is None]
            if len(history) < len(ctx.history):
                ctx.record(dropped_history=len(ctx.history) - len(history))
                ctx.history = history
        reply = await call_next(ctx)
        if reply is None or not options.check_replies:
            return reply
        leak = self.leak(ctx, reply, options)
        if leak is not None:
            ctx.answer = None
            return ctx.ignore("leak", what=leak)
        return reply

    def leak(self, ctx: TurnContext, reply: Reply, options: GuardOptions) -> str | None:
        """What the reply would give away or post that it must not, or None."""
        text = reply.render_plain()
        for value, what in self.protected.items():
            if value in text:
                return what
        flat = _flat(text)
        system = _flat(self._system_prompt(ctx))
        size = options.prompt_overlap_chars
        if any(system[i : i + size] in flat for i in range(len(system) - size + 1)):
            return "system prompt"
        if _EVERYONE.search(text):
            return "mention of everyone"
        known = {
            _domain(u) for chunk in ctx.chunks for u in _URL.findall(f"{chunk.url} {chunk.text}")
        }
        known.update(_domain(r.url) for r in reply.references if r.url)
        known.update(d.lower() for d in options.allowed_domains)
        for url in _URL.findall(text):
            if _domain(url) not in known:
                return f"link to {_domain(url)}"
        return None

    def _system_prompt(self, ctx: TurnContext) -> str:
        return self.services.prompts.render(
            "system",
            ctx.language,
            bot_name=ctx.config.bot.name,
            topic=ctx.group.topic or "",
            question=ctx.question,
            chunks=[],
            history=[],
        )
