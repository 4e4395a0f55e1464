"""Cheap features of the message text alone: question form, length, code, language, chat noise.

Group chats are mostly chitchat; real questions tend to carry an interrogative, an identifier
(``mmcv``, ``to(cuda)``), an error message or a command line, while chitchat carries stickers
(``[旺柴]``), laughter and short reactions. None of these decides alone; the gate weighs them.
"""

from __future__ import annotations

import math
import re

from knowledge.text import HAN, detect_language

_QMARK = re.compile(r"[?？]")
_ZH_ASK = re.compile(
    r"吗|嘛|么[?？。]?$|呢|怎么|怎样|如何|为什么|为啥|啥|什么|哪|咋|是否|能否|能不能|可不可以|"
    r"有没有|是不是|会不会|多少|几"
)
_ZH_HELP = re.compile(
    r"请问|请教|求助|求教|大佬|佬们|各位|有人|有没有人|谁知道|报错|出错|错误|失败|问题"
)
_EN_ASK = re.compile(
    r"\b(what|how|why|which|where|when|who|does|do|is|are|can|could|should|would|any(one|body))\b",
    re.I,
)
_EN_HELP = re.compile(
    r"\b(error|errors|fail(ed|s)?|help|issue|bug|exception|install|support)\b", re.I
)
_CODE = re.compile(
    r"Traceback|Error\b|Exception\b|File \"|line \d+|"
    r"\w+\.(py|cpp|h|cu|yaml|yml|json|sh|pth|onnx)\b|"
    r"(^|\s)--?[a-zA-Z][\w-]+|`[^`]+`|\b(import|pip|conda|python|cmake|make|sudo|git)\s|"
    r"[\w.]+\(\)|[A-Za-z_]\w*\.[A-Za-z_]\w*|/[\w.-]+/[\w.-]+|\w+_\w+|==|!=|->|>>>"
)
_STICKER = re.compile(r"\[[^\[\]\s]{1,4}\]")
_LAUGH = re.compile(r"哈哈|嘿嘿|呵呵|233|hhh|笑死|lol|\bhaha", re.I)
_LATIN_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]*")
_TECH_TOKEN = re.compile(r"[A-Za-z]+\d|\d+[A-Za-z]|[a-z][A-Z]|_|\.|^[A-Z]{2,}$")

TEXT_FEATURES: tuple[str, ...] = (
    "log_chars",
    "question_mark",
    "ask_words",
    "help_words",
    "code_marks",
    "latin_share",
    "tech_tokens",
    "stickers",
    "laughter",
    "sentences",
    "zh",
    "mentioned",
)


def text_features(text: str, mentioned: bool = False) -> dict[str, float]:
    """The message-only features, by name (the order of ``TEXT_FEATURES``)."""
    latin = _LATIN_TOKEN.findall(text)
    cjk = len(HAN.findall(text))
    words = len(latin) + cjk
    tech = sum(1 for token in latin if _TECH_TOKEN.search(token) or len(token) >= 4)
    return {
        "log_chars": math.log1p(len(text)),
        "question_mark": float(bool(_QMARK.search(text))),
        "ask_words": float(min(3, len(_ZH_ASK.findall(text)) + len(_EN_ASK.findall(text)))),
        "help_words": float(min(3, len(_ZH_HELP.findall(text)) + len(_EN_HELP.findall(text)))),
        "code_marks": float(min(5, len(_CODE.findall(text)))),
        "latin_share": len(latin) / words if words else 0.0,
        "tech_tokens": float(min(5, tech)),
        "stickers": float(min(3, len(_STICKER.findall(text)))),
        "laughter": float(bool(_LAUGH.search(text))),
        "sentences": float(min(5, len(re.findall(r"[。！!？?\n]", text.strip(" 。\n"))) + 1)),
        "zh": float(detect_language(text) == "zh"),
        "mentioned": float(mentioned),
    }
