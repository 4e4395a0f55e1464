"""The local GGUF model as an OpenAI-compatible HTTP service: ``huixiangdou-bot llm serve``, and
the daemon's own model process (bot.llm.supervisor starts this module with ``--fd``).

The service is llama-cpp-python's server (its ``server`` extra: chat completions with the chat
template from the GGUF, streaming, GBNF ``grammar``), built in code with the tier planner's
settings, plus what the bot needs and the server lacks:

- ``GET /healthz``, answered while a generation runs (the server's own routes wait for the
  model);
- a grammar check: the server hands any ``grammar`` to llama.cpp, whose process dies on a
  malformed one; here it is a 400;
- ``POST /v1/huixiangdou/score``: a 0-10 score, the expected value under the model's own
  probabilities for each number, the answer constrained to a number by a grammar. The standard
  way to get probabilities, ``logprobs``, needs llama-cpp-python's ``logits_all``, which runs the
  output layer for every prompt token: measured 22% slower prompt evaluation on every request
  (SmolLM2-135M, 1000 tokens), and n_ctx x vocabulary floats of memory.

Settings where the server's defaults are wrong for the bot: ``interrupt_requests`` off (a second
request would cut a running stream short, without a finish reason), both thread counts set
(``n_threads_batch`` defaults to every CPU), ``logits_all`` and ``verbose`` off.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import llama_cpp
import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from llama_cpp.server.app import authenticate, create_app, get_llama_proxy
from llama_cpp.server.model import LlamaProxy
from llama_cpp.server.settings import ModelSettings, ServerSettings
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.config import LLMSettings
from bot.llm.llama_cpp import SCORE_ROUTE, plan_for_settings, require_fit, thread_count
from bot.llm.protocol import ChatMessage, ModelError
from bot.llm.scoring import SCORE_GRAMMAR
from bot.llm.vocabulary import Vocabulary


def model_settings(settings: LLMSettings, path: Path) -> ModelSettings:
    """llama-cpp-python's server settings that carry out the planner's plan."""
    plan = require_fit(plan_for_settings(settings, path))
    if plan.n_gpu_layers and not llama_cpp.llama_supports_gpu_offload():
        logging.getLogger(__name__).warning(
            "llm.tier %s plans %d GPU layers, but this llama-cpp-python has no GPU support "
            "(make llama LLAMA_BUILD=cuda): running on the CPU",
            plan.tier.name,
            plan.n_gpu_layers,
        )
    threads = thread_count(settings)
    return ModelSettings(
        model=str(path),
        model_alias=path.name,
        n_threads=threads,
        n_threads_batch=threads,
        seed=settings.seed,
        logits_all=False,
        verbose=False,
        **plan.llama_kwargs(),
    )


def create_model_app(settings: LLMSettings, api_key: str | None = None) -> FastAPI:
    """The service for ``settings.model_path``; loads the model (seconds to minutes)."""
    if settings.model_path is None:
        raise ValueError("create_model_app needs the model's path")
    path = settings.model_path
    model = model_settings(settings, path)
    try:
        app: FastAPI = create_app(
            server_settings=ServerSettings(api_key=api_key, interrupt_requests=False),
            model_settings=[model],
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot load {path}: {exc}") from exc
    vocabulary = Vocabulary(path)
    scorer = Scorer(vocabulary)

    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": model.model_alias, "n_ctx": model.n_ctx}

    async def score(
        request: ScoreRequest, proxy: Annotated[LlamaProxy, Depends(get_llama_proxy)]
    ) -> dict[str, Any]:
        messages: list[ChatMessage] = [
            {"role": turn.role, "content": turn.content} for turn in request.messages
        ]
        return await run_in_threadpool(scorer.score, proxy(None), messages)

    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route(
        f"/v1{SCORE_ROUTE}", score, methods=["POST"], dependencies=[Depends(authenticate)]
    )
    app.add_middleware(GrammarCheck, vocabulary=vocabulary)
    return app


class ChatTurn(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ScoreRequest(BaseModel):
    messages: list[ChatTurn]


class Scorer:
    """Scores with the served model: the grammar allows only " "? ("10" | [0-9]), and the
    score is the expected value under the next-token probabilities of the numbers."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.grammar = llama_cpp.LlamaGrammar.from_string(SCORE_GRAMMAR, verbose=False)
        # Token ids that spell each score on their own ("7", and "▁7" in SentencePiece
        # vocabularies).
        self.ids: dict[int, list[int]] = {}
        for value in range(11):
            ids: set[int] = set()
            for text in (str(value), " " + str(value)):
                tokens = vocabulary.tokenize(text)
                if len(tokens) == 1:
                    ids.add(tokens[0])
            self.ids[value] = sorted(ids)

    def score(self, llama: llama_cpp.Llama, messages: list[ChatMessage]) -> dict[str, Any]:
        prompt = self.vocabulary.prompt_tokens(messages)
        if len(prompt) + 2 > llama.n_ctx():
            raise HTTPException(
                status_code=400,
                detail={
                    "message": f"a {len(prompt)}-token scoring prompt exceeds n_ctx "
                    f"{llama.n_ctx()}",
                    "code": "context_length_exceeded",
                },
            )
        ids = self.ids
        logits, first = _next_logits(llama, prompt, self.grammar)
        probs = _softmax(logits)
        p = {value: float(probs[ids[value]].sum()) for value in range(11) if ids[value]}
        mass = sum(p.values())
        text = llama.detokenize([first]).decode("utf-8", errors="replace")
        # Where "10" is two tokens ("1", "0"), the probability of "1" is shared between 1 and
        # 10 by the probability that "0" follows it.
        ones = ids[1]
        if not ids[10] and ones and p.get(1, 0.0) > 0.01 * max(mass, 1e-12):
            one = first if first in ones else max(ones, key=lambda t: probs[t])
            after, second = _next_logits(llama, [*prompt, one])
            zero = float(_softmax(after)[ids[0]].sum()) if ids[0] else 0.0
            p[10] = p[1] * zero
            p[1] = p[1] * (1 - zero)
            if first == one and second in ids[0]:
                text += "0"
        return {"probabilities": p, "mass": mass, "text": text.strip()}


def _next_logits(llama: Any, tokens: list[int], grammar: Any = None) -> tuple[np.ndarray, int]:
    """The raw next-token logits after ``tokens``, and the token the (grammar-constrained,
    greedy) sampler picks. The prompt prefix already in the KV cache is reused."""
    captured: list[np.ndarray] = []

    def capture(_ids: Any, logits: Any) -> Any:
        captured.append(np.array(logits, dtype=np.float32, copy=True))
        return logits

    generator = llama.generate(
        tokens,
        temp=0.0,
        grammar=grammar,
        logits_processor=llama_cpp.LogitsProcessorList([capture]),
    )
    try:
        token = next(generator)
    finally:
        generator.close()
    return captured[0], int(token)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    result: np.ndarray = shifted / shifted.sum()
    return result


class GrammarCheck:
    """Answers 400 to a completion request whose ``grammar`` llama.cpp cannot parse: handed
    on, it would crash the process (llama-cpp-python does not check the parser's result)."""

    def __init__(self, app: ASGIApp, vocabulary: Vocabulary) -> None:
        self.app = app
        self.vocabulary = vocabulary

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("completions"):
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        body = b""
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        error = self._check(body)
        if error is not None:
            response = JSONResponse(
                {"error": {"message": error, "type": "invalid_request_error", "code": None}},
                status_code=400,
            )
            await response(scope, receive, send)
            return

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)

    def _check(self, body: bytes) -> str | None:
        try:
            grammar = json.loads(body).get("grammar")
        except (ValueError, AttributeError):
            return None  # not JSON, or not an object: the server's own validation answers
        if grammar is None:
            return None
        if not isinstance(grammar, str):
            return "grammar must be a string"
        vocab = self.vocabulary.load().vocab
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not sampler:
            return "grammar: llama.cpp cannot parse it"
        llama_cpp.llama_sampler_free(sampler)
        return None


# -- running it -----------------------------------------------------------------------------


def serve(settings: LLMSettings, host: str, port: int, api_key: str | None = None) -> None:
    """``huixiangdou-bot llm serve``: load the model and serve until interrupted."""
    app = create_model_app(settings, api_key)
    uvicorn.run(
        app, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=5
    )


def _exit_when_parent_goes() -> None:
    """The supervisor holds our stdin open; when it closes (the daemon stopped or was killed),
    nobody is left to serve."""
    sys.stdin.buffer.read()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    """The daemon's model process: ``python -m bot.llm.serve --settings JSON --fd N``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--settings", required=True, help="the llm section of bot.yaml, JSON")
    parser.add_argument("--fd", type=int, required=True, help="a listening socket to serve on")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a native crash prints the Python stack to the daemon's log
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    settings = LLMSettings.model_validate_json(args.settings)
    try:
        app = create_model_app(settings)
    except Exception as exc:
        print(f"cannot load the model: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    )
    server.run(sockets=[socket.socket(fileno=args.fd)])


if __name__ == "__main__":
    main()
