"""The local playground: a simulated group chat, as a JSON API (the admin console's chat view
is its page).

``POST /api/messages`` takes a message as a group member would send it (``reply_to``: the id
of a message it replies to, e.g. the bot's answer's ``platform_reply_id``); ``GET
/api/messages/{id}`` shows whether the bot answered or stayed silent, the reply and the decision
trace; ``POST /api/messages/{id}/reactions`` puts a thumbs up or down on the bot's reply to that
message (feedback for the gate). Replies already live in the database (the outbox stores them),
so sending, and deleting (``/hxd forget``), are no-ops here.

Its routes are admin routes: the server puts them behind the admin token (and on the admin port
when there is one), since they show every stored message, of every platform.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.common.webhook import TOO_LARGE, BodyTooLarge, read_body, refusal
from bot.adapter import Adapter, AdapterEnvironment, AdapterSettings, Delivery
from bot.message import Message, Reaction, Reply

if TYPE_CHECKING:
    from bot.inbox import Inbox

MAX_BODY_BYTES = 256 << 10  # a 20,000-character message in JSON, escaped, fits
MAX_MESSAGE_ID = (1 << 63) - 1  # the store's ids are 64-bit


class PostedMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=20000)
    sender: str = Field("member", min_length=1, max_length=64)
    conversation_id: str = Field("playground", min_length=1, max_length=128)
    conversation_type: str = Field("group", pattern="^(group|p2p)$")
    message_id: str | None = Field(None, min_length=1, max_length=128)
    mentioned_bot: bool = False
    # The id of the message this one replies to (a member's message_id, or the bot's
    # platform_reply_id), and of the first message of the thread it is in.
    reply_to: str = Field("", max_length=128)
    thread_root: str = Field("", max_length=128)
    wait: bool = False


class PostedReaction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sender: str = Field("member", min_length=1, max_length=64)
    reaction: str = Field(pattern="^(up|down)$")


def reply_id(message_id: int) -> str:
    """The playground's id for the bot's reply to a stored message."""
    return f"playground-reply-{message_id}"


class PlaygroundSettings(AdapterSettings):
    """``adapters.playground`` in bot.yaml."""

    wait_seconds: float = Field(120, ge=0)


class PlaygroundAdapter(Adapter):
    name = "playground"
    Settings = PlaygroundSettings
    settings: PlaygroundSettings
    simulated = True

    def __init__(
        self, settings: PlaygroundSettings, environment: AdapterEnvironment | None = None
    ) -> None:
        super().__init__(settings, environment)
        self._inbox: Inbox | None = None

    @property
    def admin_routes(self) -> list[BaseRoute]:
        return [
            Route("/api/messages", self.post_message, methods=["POST"]),
            Route("/api/messages/{message_id:int}", self.get_message, methods=["GET"]),
            Route(
                "/api/messages/{message_id:int}/reactions", self.post_reaction, methods=["POST"]
            ),
        ]

    async def start(self, inbox: Inbox) -> None:
        self._inbox = inbox

    async def send(self, delivery: Delivery, reply: Reply) -> str | None:
        return reply_id(delivery.message_id)

    async def delete(self, conversation_id: str, platform_message_id: str) -> None:
        """Nothing to do: the playground shows replies from the database, where the core marks
        the reply deleted."""

    def _require_inbox(self) -> Inbox:
        if self._inbox is None:
            raise RuntimeError("the playground adapter has not been started")
        return self._inbox

    async def post_message(self, request: Request) -> Response:
        try:
            posted = PostedMessage.model_validate_json(await read_body(request, MAX_BODY_BYTES))
        except BodyTooLarge:
            return refusal(TOO_LARGE)
        except ValidationError as exc:
            return _invalid("invalid message", exc)
        inbox = self._require_inbox()
        message = Message(
            platform=self.name,
            conversation_id=posted.conversation_id,
            conversation_type="p2p" if posted.conversation_type == "p2p" else "group",
            sender_id=posted.sender,
            sender_name=posted.sender,
            text=posted.text,
            platform_message_id=posted.message_id or uuid.uuid4().hex,
            mentioned_bot=posted.mentioned_bot,
            reply_to=posted.reply_to,
            thread_root=posted.thread_root,
        )
        stored = await inbox.receive(message)
        if posted.wait:
            view = await inbox.wait_done(stored.id, self.settings.wait_seconds)
        else:
            view = await inbox.message_view(stored.id)
        return JSONResponse(
            {"duplicate": stored.duplicate, **(view or {})},
            status_code=200 if posted.wait else 202,
        )

    async def post_reaction(self, request: Request) -> Response:
        """A thumbs up or down on the bot's reply to message ``{id}``: 200 when stored as
        feedback, 404 when the bot has not replied to that message."""
        try:
            posted = PostedReaction.model_validate_json(await read_body(request, MAX_BODY_BYTES))
        except BodyTooLarge:
            return refusal(TOO_LARGE)
        except ValidationError as exc:
            return _invalid("invalid reaction", exc)
        message_id = int(request.path_params["message_id"])
        reaction = Reaction(
            platform=self.name,
            message_id=reply_id(message_id),
            user_id=posted.sender,
            rating=1 if posted.reaction == "up" else -1,
            emoji=posted.reaction,
        )
        if not await self._require_inbox().react(reaction):
            return JSONResponse({"error": "the bot has not replied to that message"}, 404)
        return JSONResponse({"stored": True, "rating": reaction.rating})

    async def get_message(self, request: Request) -> Response:
        message_id = int(request.path_params["message_id"])
        view = None
        if message_id <= MAX_MESSAGE_ID:
            view = await self._require_inbox().message_view(message_id)
        if view is None:
            return JSONResponse({"error": "no such message"}, status_code=404)
        return JSONResponse(view)


def _invalid(what: str, exc: ValidationError) -> JSONResponse:
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "error": e["msg"]}
        for e in exc.errors()
    ]
    return JSONResponse({"error": what, "details": errors}, status_code=422)
