"""An OpenAI-compatible server over the native `Engine` (FastAPI + uvicorn).

Routes: `POST /v1/chat/completions`, `POST /v1/completions` (raw prompts, no chat template), `GET /v1/models`,
`GET /health` (no key needed). Message content parts may be OpenAI style (`text`, `image_url`, `video_url`) or
CONTRACTS section 4 items (`image`, `video`); every media source goes through a `MediaPolicy` (data URIs by
default; local files and remote URLs only when the operator opts in, see `media_policy`); per-item options
(`min_pixels`, `max_pixels`, `fps`, `min_frames`, `max_frames`) may sit on the part or inside its
`image_url`/`video_url` object. Sampling fields the request leaves out take the checkpoint's
`generation_config.json` defaults, as vLLM does.

Answers as the official `openai` client reads them, with vLLM's extensions: `n` choices (choice i samples with
`seed + i` when a seed is given), `logprobs`/`top_logprobs`, `prompt_logprobs`, `return_tokens_as_token_ids`,
`return_token_ids` (`serve_openai`), and `stream` as server-sent events: a first chunk with the role, text
deltas as tokens arrive, a last chunk per choice with its finish reason and, when asked, all its logprobs (the
client joins them), a usage chunk with `stream_options.include_usage`, then `data: [DONE]`. An error before
the first token is an HTTP status; after it, an `{"error": ...}` event.

Bounded work (`serve_request.Limits`): the body size, JSON nesting, images and videos per request, processed
pixels per request, `max_tokens` (at most the context left by the prompt, which is also the default cap; a
prompt plus `max_tokens` beyond the context is a 400 before anything is allocated), `n`, and the queue (429 when
full). A request whose client disconnects is cancelled, streamed or not: dropped if still queued, stopped at the
next decode step if running (`Ticket.cancel`).

The model is not thread-safe, so one worker thread runs every request, micro-batched (`serve_worker`); greedy
replies do not depend on the batching (fp32). Errors are JSON `{"error": {"message", "type",
"code"}}` with status 400 (bad request), 401 (key), 404 (model), 413 (body too large), 429 (queue full) or 500,
never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from qwen3vl_eval.backends.base import Reply
from qwen3vl_eval.backends.media_policy import MediaPolicy
from qwen3vl_eval.backends.native import Engine
from qwen3vl_eval.backends.serve_openai import (
    ChunkWriter,
    TextStream,
    TokenText,
    chat_completion,
    chat_logprobs,
    completion_logprobs,
    completions,
    sse,
)
from qwen3vl_eval.backends.serve_request import (  # noqa: F401 - parse_params and friends are imported from here
    BodyTooLarge,
    Limits,
    RequestError,
    Shape,
    convert_part,
    parse_messages,
    parse_params,
    parse_prompts,
    parse_shape,
    read_body,
    request_params,
)
from qwen3vl_eval.backends.serve_worker import BatchWorker, Cancelled, QueueFull, Ticket
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.jsonio import loads

log = logging.getLogger("qwen3vl_eval.backends.serve")


def error_response(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                        headers=headers)


def failure(e: BaseException) -> JSONResponse:
    """The error response of an exception raised while serving a request."""
    if isinstance(e, InputError):
        return error_response(400, str(e), "invalid_request_error")
    if isinstance(e, QueueFull):
        return error_response(429, str(e), "rate_limit_error", {"Retry-After": "1"})
    if isinstance(e, Cancelled):
        return error_response(499, "the client closed the request", "cancelled")
    return error_response(500, f"internal error: {type(e).__name__}: {e}", "server_error")


# ------------------------------------------------------------------------------------------------ waiting
async def wait_for(request: Request, ticket: Ticket, poll_s: float = 0.1) -> Reply:
    """The ticket's reply; the ticket is cancelled as soon as the client disconnects (raises Cancelled)."""
    waiter = asyncio.wrap_future(ticket.future)
    while True:
        done, _ = await asyncio.wait({waiter}, timeout=poll_s)
        if done:
            return waiter.result()
        if await request.is_disconnected():
            ticket.cancel()
            raise Cancelled()


async def wait_all(request: Request, tickets: list[Ticket]) -> list[Reply]:
    """Every ticket's reply; on the first failure (or a disconnect) the others are cancelled too."""
    try:
        return [await wait_for(request, t) for t in tickets]
    except BaseException:
        for t in tickets:
            t.cancel()
        raise


def submit_all(worker: BatchWorker, prompts: list, params: Any, fit: bool, shape: Shape, *, raw: bool,
               on_tokens: Callable[[int, list[int]], None] | None = None) -> list[Ticket]:
    """n tickets per prompt (choice i sampled with seed + i); all or none are queued."""
    tickets: list[Ticket] = []
    try:
        for prompt in prompts:
            for i in range(shape.n):
                index = len(tickets)
                callback = (lambda ids, index=index: on_tokens(index, ids)) if on_tokens else None
                p = params if i == 0 or params.greedy else replace(params, seed=params.seed + i)
                tickets.append(worker.submit(prompt, p, fit, logprobs=shape.wanted.logprobs,
                                             prompt_logprobs=shape.wanted.prompt_logprobs, raw=raw,
                                             on_tokens=callback))
    except BaseException:
        for t in tickets:
            t.cancel()
        raise
    return tickets


class Streamer:
    """One streamed response: tokens from the worker thread land in an asyncio queue; `events()` yields the
    server-sent events. `start()` waits for the first token (or the end), so an early failure is still an HTTP
    error."""

    def __init__(self, request: Request, writer: ChunkWriter, tokenizer: Any, hold: int, shape: Shape) -> None:
        self.request, self.writer, self.shape = request, writer, shape
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, list[int]]] = asyncio.Queue()
        self.tokenizer = tokenizer
        self.texts: list[TextStream] = []
        self.hold = hold
        self.tickets: list[Ticket] = []
        self.pending: list[tuple[int, list[int]]] = []

    def on_tokens(self, index: int, ids: list[int]) -> None:  # the worker thread
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (index, ids))

    def attach(self, tickets: list[Ticket]) -> None:
        self.tickets = tickets
        self.texts = [TextStream(self.tokenizer, self.hold) for _ in tickets]

    async def _next(self, poll_s: float = 0.1) -> tuple[int, list[int]] | None:
        """The next token event, or None when every ticket is done and no event is left."""
        while True:
            if not self.queue.empty():
                return self.queue.get_nowait()
            if all(t.future.done() for t in self.tickets):
                await asyncio.sleep(0)  # events scheduled before the futures completed
                if self.queue.empty():
                    return None
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                return await asyncio.wait_for(self.queue.get(), poll_s)
            if await self.request.is_disconnected():
                self.cancel()
                raise Cancelled()

    def cancel(self) -> None:
        for t in self.tickets:
            t.cancel()

    async def start(self) -> None:
        """Wait for the first token of any choice; raise what a ticket raised before any token came."""
        try:
            event = await self._next()
            if event is not None:
                self.pending.append(event)
            for t in self.tickets:
                if t.future.done() and not t.future.cancelled() and t.future.exception() is not None:
                    raise t.future.exception()
        except BaseException:
            self.cancel()
            raise

    async def events(self) -> AsyncIterator[str]:
        w, finished = self.writer, set()
        prompt_tokens, completion_tokens = 0, 0
        try:
            for i in range(len(self.tickets)):
                yield w.choice(i, "", role=True) if w.chat else w.choice(i, "")
            while True:
                event = self.pending.pop(0) if self.pending else await self._next()
                if event is None:
                    break
                i, ids = event
                if i not in finished and (delta := self.texts[i].add(ids)):
                    yield w.choice(i, delta)
                for j, t in enumerate(self.tickets):  # choices finished so far
                    if j in finished or not t.future.done():
                        continue
                    if self.queue.qsize():  # their last tokens first
                        break
                    finished.add(j)
                    reply = t.future.result()
                    prompt_tokens, completion_tokens = reply.prompt_tokens, completion_tokens + len(reply.token_ids)
                    yield self._last(j, reply)
            for j, t in enumerate(self.tickets):
                if j not in finished:
                    reply = t.future.result()
                    prompt_tokens, completion_tokens = reply.prompt_tokens, completion_tokens + len(reply.token_ids)
                    yield self._last(j, reply)
            if self.shape.include_usage:
                yield w.usage(prompt_tokens, completion_tokens)
        except Cancelled:
            return
        except Exception as e:  # noqa: BLE001 - after the first byte an error is an event
            status = 400 if isinstance(e, InputError) else 500
            yield w.error(status, str(e), "invalid_request_error" if status == 400 else "server_error")
        finally:
            self.cancel()  # a no-op for finished tickets; stops decoding when the client left mid-stream
        yield sse("[DONE]")

    def _last(self, index: int, reply: Reply) -> str:
        wanted = self.shape.wanted
        logprobs = None
        if wanted.logprobs is not None:
            text = TokenText(self.tokenizer, wanted.token_ids_as_strings)
            logprobs = (chat_logprobs(reply, text, wanted.logprobs) if self.writer.chat else
                        completion_logprobs(reply.token_ids, reply.logprobs or [], text, wanted.logprobs))
        return self.writer.choice(index, self.texts[index].finish(reply.text), logprobs=logprobs,
                                  finish_reason=reply.finish_reason, token_ids=reply.token_ids)


# ------------------------------------------------------------------------------------------------ app
def create_app(engine: Any, *, model_name: str | None = None, api_key: str | None = None,
               max_batch_size: int = 1, batch_wait_ms: float = 5.0, media: MediaPolicy | None = None,
               limits: Limits | None = None, mm_processor_kwargs: dict | None = None) -> FastAPI:
    """The FastAPI app serving `engine` (anything with the Engine's `chat`, `defaults` and `info`; `complete`
    and the `logprobs` keywords where it has them). `mm_processor_kwargs`: media options every item takes
    unless the request or the item sets its own (vLLM's `--mm-processor-kwargs`)."""
    name = model_name or str(getattr(engine, "name", "model"))
    limits, media = limits or Limits(), media or MediaPolicy()
    worker = BatchWorker(engine, max_batch_size, batch_wait_ms, max_queue=limits.max_queue,
                         max_pixels=limits.max_pixels)
    created = int(time.time())
    processor = getattr(engine, "processor", None)
    tokenizer = getattr(processor, "tokenizer", None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        worker.close()

    app = FastAPI(title="qwen3vl-eval", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.worker = worker

    def denied(request: Request) -> JSONResponse | None:
        if api_key is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode()):
            return None
        return error_response(401, "missing or invalid API key (Authorization: Bearer ...)", "authentication_error",
                              {"WWW-Authenticate": "Bearer"})

    async def read_request(request: Request) -> dict | JSONResponse:
        if (resp := denied(request)) is not None:
            return resp
        try:
            body = loads(await read_body(request, limits.max_body_bytes), "the request body", error=RequestError)
        except BodyTooLarge as e:
            return error_response(413, str(e), "invalid_request_error")
        except InputError as e:
            return error_response(400, str(e), "invalid_request_error")
        if not isinstance(body, dict):
            return error_response(400, "the request body must be a JSON object", "invalid_request_error")
        requested = body.get("model")
        if requested not in (None, "", name):
            return error_response(404, f"model {requested!r} not found; this server serves {name!r}",
                                  "not_found_error")
        return body

    async def answer(request: Request, body: dict, *, chat: bool) -> Any:
        try:
            shape = parse_shape(body, limits, chat=chat)
            if not chat and "max_tokens" not in body and "max_completion_tokens" not in body:
                body = {**body, "max_tokens": 16}  # OpenAI's completions default
            params, fit = request_params(body, engine.defaults, limits)
            if chat:
                prompts = [parse_messages(body, media, limits, mm_processor_kwargs)]
            else:
                if tokenizer is None:
                    raise RequestError("this server's engine does not take raw prompts (/v1/completions)")
                prompts = parse_prompts(body, tokenizer)
                if len(prompts) * shape.n > limits.max_n:
                    raise RequestError(f"prompt: {len(prompts)} prompts x n={shape.n} choices is over this "
                                       f"server's limit of {limits.max_n}")
            if shape.stream:
                hold = max((len(s) for s in params.stop or ()), default=0)
                streamer = Streamer(request, ChunkWriter(name, chat), tokenizer, hold, shape)
                streamer.attach(submit_all(worker, prompts, params, fit, shape, raw=not chat,
                                           on_tokens=streamer.on_tokens))
                await streamer.start()
                return StreamingResponse(streamer.events(), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache"})
            replies = await wait_all(request, submit_all(worker, prompts, params, fit, shape, raw=not chat))
            wanted = shape.wanted
            if chat:
                return chat_completion(replies, name, wanted, tokenizer, replies[0].prompt_token_ids)
            groups = [(p, replies[k * shape.n:(k + 1) * shape.n]) for k, p in enumerate(prompts)]
            return completions(groups, name, wanted, tokenizer, shape.echo)
        except Exception as e:  # noqa: BLE001 - one line to the client, the traceback in the server log
            if not isinstance(e, (InputError, QueueFull, Cancelled)):
                log.exception("request failed")
            return failure(e)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "queued": worker.queued(), **worker.stats}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        if (resp := denied(request)) is not None:
            return resp
        info = engine.info() if callable(getattr(engine, "info", None)) else {}
        card = {"id": name, "object": "model", "created": created, "owned_by": "qwen3vl-eval",
                "max_model_len": getattr(engine, "context", None)}
        for key in ("dtype", "device", "checkpoint_sha256", "video_prompt", "cuda_graph", "compile", "attention"):
            if key in info:
                card[key] = info[key]
        card["mm_processor_kwargs"] = dict(mm_processor_kwargs or {})
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        body = await read_request(request)
        return body if isinstance(body, JSONResponse) else await answer(request, body, chat=True)

    @app.post("/v1/completions")
    async def text_completions(request: Request) -> Any:
        body = await read_request(request)
        return body if isinstance(body, JSONResponse) else await answer(request, body, chat=False)

    return app


def serve(engine: Engine, *, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
          api_key: str | None = None, max_batch_size: int = 1, batch_wait_ms: float = 5.0,
          log_level: str = "info", media: MediaPolicy | None = None, limits: Limits | None = None,
          mm_processor_kwargs: dict | None = None) -> None:
    """Run the server until interrupted."""
    import uvicorn

    app = create_app(engine, model_name=model_name, api_key=api_key, max_batch_size=max_batch_size,
                     batch_wait_ms=batch_wait_ms, media=media, limits=limits,
                     mm_processor_kwargs=mm_processor_kwargs)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
