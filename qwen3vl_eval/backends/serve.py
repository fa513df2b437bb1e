"""An OpenAI-compatible chat-completions server over the native `Engine` (FastAPI + uvicorn).

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health` (no key needed). Message content parts may
be OpenAI style (`text`, `image_url`, `video_url`; the URL a data URL, an http(s) URL, a `file://` URL or a path
on the server's filesystem) or CONTRACTS section 4 items (`image`, `video`); per-item options (`min_pixels`,
`max_pixels`, `fps`, `min_frames`, `max_frames`) may sit on the part or inside its `image_url`/`video_url`
object. Sampling fields the request leaves out take the checkpoint's `generation_config.json` defaults, as vLLM
does. Each choice also carries `token_ids` (the generated ids, eos included), an extension other servers lack.

The model is not thread-safe, so one worker thread runs every request. With `max_batch_size > 1` it collects the
requests that arrive within `batch_wait_ms` of the first (up to the limit) and runs those sharing generation
parameters as one `Engine.chat` batch; greedy replies do not depend on the batching (fp32). A batch that fails
is rerun one request at a time, so one bad request fails alone. Errors are JSON `{"error": {"message", "type",
"code"}}` with status 400 (bad request), 401 (key), 404 (model) or 500, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from qwen3vl_eval.backends.base import Reply
from qwen3vl_eval.backends.native import Engine
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.sampling import GenerationParams
from qwen3vl_eval.processor.messages import item_options, media_items

log = logging.getLogger("qwen3vl_eval.backends.serve")

ROLE_ALIASES = {"developer": "system"}
# Request fields this server cannot honour, with the values that ask for nothing special.
UNSUPPORTED = {"frequency_penalty": (0,), "logit_bias": ({},), "logprobs": (False,), "top_logprobs": (0,),
               "tools": ([],), "tool_choice": ("none", "auto"), "response_format": ({"type": "text"},), "n": (1,),
               "stream": (False,)}


class RequestError(InputError):
    """A request that cannot be served as asked (HTTP 400)."""


# ------------------------------------------------------------------------------------------------ parsing
def _number(body: dict, key: str, kind: type, *, low: float | None = None) -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok:
        raise RequestError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    if low is not None and value < low:
        raise RequestError(f"{key}: must be >= {low}, got {value!r}")
    return kind(value)


def parse_params(body: dict, defaults: GenerationParams) -> GenerationParams:
    """Generation parameters of a request; fields it leaves out keep `defaults`."""
    for key, neutral in UNSUPPORTED.items():
        value = body.get(key)
        if value is not None and value not in neutral:
            raise RequestError(f"{key}={value!r} is not supported by this server")
    max_tokens = _number(body, "max_completion_tokens", int, low=1)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", int, low=1)
    top_k = _number(body, "top_k", int)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop)):
        raise RequestError("stop: expected a non-empty string or a list of them")
    ignore_eos = body.get("ignore_eos")
    if ignore_eos is not None and not isinstance(ignore_eos, bool):
        raise RequestError("ignore_eos: expected true or false")
    try:
        return defaults.with_overrides(
            max_new_tokens=max_tokens, temperature=_number(body, "temperature", float),
            top_p=_number(body, "top_p", float), top_k=None if top_k is None else max(top_k, 0),
            seed=_number(body, "seed", int), presence_penalty=_number(body, "presence_penalty", float),
            repetition_penalty=_number(body, "repetition_penalty", float),
            stop=tuple(stop) if stop else None, ignore_eos=ignore_eos)
    except InputError as e:
        raise RequestError(str(e)) from None


def convert_part(part: Any, where: str) -> dict:
    """One OpenAI content part as a CONTRACTS section 4 item (those items pass through)."""
    if not isinstance(part, dict):
        raise RequestError(f"{where}: a content part must be an object")
    kind = part.get("type")
    if kind in ("image_url", "video_url"):
        inner = part.get(kind)
        url = inner.get("url") if isinstance(inner, dict) else inner
        if not isinstance(url, str) or not url.strip():
            raise RequestError(f"{where}: {kind} needs a 'url' string")
        media = "image" if kind == "image_url" else "video"
        return {"type": media, media: url.strip(), **item_options(media, part, inner)}
    if kind in ("text", "image", "video") or kind is None:
        return part
    raise RequestError(f"{where}: unsupported content part type {kind!r} (text, image_url, video_url, image, "
                       f"video)")


def parse_messages(body: dict) -> list[dict]:
    """The request's messages as a conversation in the CONTRACTS section 4 format, validated."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: expected a non-empty list")
    conversation = []
    for m, message in enumerate(messages):
        where = f"messages[{m}]"
        if not isinstance(message, dict):
            raise RequestError(f"{where}: expected an object")
        role = ROLE_ALIASES.get(message.get("role"), message.get("role"))
        content = message.get("content")
        if isinstance(content, list):
            content = [convert_part(p, f"{where}.content[{i}]") for i, p in enumerate(content)]
        elif content is not None and not isinstance(content, str):
            raise RequestError(f"{where}.content: expected a string or a list of parts")
        conversation.append({"role": role, "content": content if content is not None else ""})
    try:
        media_items(conversation, 0)
    except InputError as e:
        raise RequestError(str(e).replace("conversation 0, message", "message")) from None
    return conversation


def completion(reply: Reply, model: str) -> dict[str, Any]:
    """The chat.completion response object of one reply."""
    completion_tokens = len(reply.token_ids)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                     "finish_reason": reply.finish_reason, "token_ids": reply.token_ids}],
        "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": reply.prompt_tokens + completion_tokens},
    }


def error_response(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                        headers=headers)


# ------------------------------------------------------------------------------------------------ worker
@dataclass
class _Job:
    conversation: list[dict]
    params: GenerationParams
    future: Future = field(default_factory=Future)


class BatchWorker:
    """One thread that owns the engine: runs queued requests, micro-batched by shared generation parameters."""

    def __init__(self, engine: Any, max_batch_size: int = 1, batch_wait_ms: float = 5.0) -> None:
        if max_batch_size < 1:
            raise InputError(f"--max-batch-size {max_batch_size}: must be at least 1")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.batch_wait_s = max(0.0, batch_wait_ms) / 1000
        self.batches: list[int] = []  # size of every engine.chat call, for tests and logs
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="qwen3vl-serve-worker", daemon=True)
        self._thread.start()

    def submit(self, conversation: list[dict], params: GenerationParams) -> Future:
        job = _Job(conversation, params)
        self._queue.put(job)
        return job.future

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, stop = [first], False
        deadline = time.monotonic() + self.batch_wait_s
        while len(jobs) < self.max_batch_size:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
        return jobs, stop

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            groups: dict[GenerationParams, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.params, []).append(job)
            for params, group in groups.items():
                self._run(group, params)
            if stop:
                return

    def _run(self, jobs: list[_Job], params: GenerationParams) -> None:
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        try:
            self.batches.append(len(jobs))
            replies = self.engine.chat([j.conversation for j in jobs], params)
        except Exception as e:  # noqa: BLE001 - reported to the client, never raised in the worker
            if len(jobs) > 1:  # find the culprit: each request alone
                for job in jobs:
                    fresh = _Job(job.conversation, job.params, Future())
                    self._run([fresh], params)
                    _transfer(fresh.future, job.future)
                return
            if not isinstance(e, InputError):
                log.exception("request failed")
            jobs[0].future.set_exception(e)
            return
        for job, reply in zip(jobs, replies):
            job.future.set_result(reply)


def _transfer(src: Future, dst: Future) -> None:
    if src.exception() is not None:
        dst.set_exception(src.exception())
    else:
        dst.set_result(src.result())


# ------------------------------------------------------------------------------------------------ app
def create_app(engine: Any, *, model_name: str | None = None, api_key: str | None = None,
               max_batch_size: int = 1, batch_wait_ms: float = 5.0) -> FastAPI:
    """The FastAPI app serving `engine` (anything with the Engine's `chat`, `defaults` and `info`)."""
    name = model_name or str(getattr(engine, "name", "model"))
    worker = BatchWorker(engine, max_batch_size, batch_wait_ms)
    created = int(time.time())

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

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        if (resp := denied(request)) is not None:
            return resp
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "qwen3vl-eval"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        if (resp := denied(request)) is not None:
            return resp
        try:
            body = await request.json()
        except ValueError as e:
            return error_response(400, f"the request body is not valid JSON ({e})", "invalid_request_error")
        if not isinstance(body, dict):
            return error_response(400, "the request body must be a JSON object", "invalid_request_error")
        requested = body.get("model")
        if requested not in (None, "", name):
            return error_response(404, f"model {requested!r} not found; this server serves {name!r}",
                                  "not_found_error")
        try:
            conversation = parse_messages(body)
            params = parse_params(body, engine.defaults)
            reply = await asyncio.wrap_future(worker.submit(conversation, params))
        except InputError as e:
            return error_response(400, str(e), "invalid_request_error")
        except Exception as e:  # noqa: BLE001 - one line to the client, the traceback in the server log
            return error_response(500, f"internal error: {type(e).__name__}: {e}", "server_error")
        return completion(reply, name)

    return app


def serve(engine: Engine, *, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
          api_key: str | None = None, max_batch_size: int = 1, batch_wait_ms: float = 5.0,
          log_level: str = "info") -> None:
    """Run the server until interrupted."""
    import uvicorn

    app = create_app(engine, model_name=model_name, api_key=api_key, max_batch_size=max_batch_size,
                     batch_wait_ms=batch_wait_ms)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
