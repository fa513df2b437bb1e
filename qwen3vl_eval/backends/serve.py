"""An OpenAI-compatible chat-completions server over the native `Engine` (FastAPI + uvicorn).

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health` (no key needed). Message content parts may
be OpenAI style (`text`, `image_url`, `video_url`) or CONTRACTS section 4 items (`image`, `video`); every media
source goes through a `MediaPolicy` (data URIs by default; local files and remote URLs only when the operator
opts in, see `media_policy`); per-item options (`min_pixels`,
`max_pixels`, `fps`, `min_frames`, `max_frames`) may sit on the part or inside its `image_url`/`video_url`
object. Sampling fields the request leaves out take the checkpoint's `generation_config.json` defaults, as vLLM
does. Each choice also carries `token_ids` (the generated ids, eos included), an extension other servers lack.

Bounded work (`Limits`): the body size, JSON nesting, images and videos per request, processed pixels per
request, `max_tokens` (at most the context left by the prompt, which is also the default cap; a prompt plus
`max_tokens` beyond the context is a 400 before anything is allocated), and the queue (429 when full). A
request whose client disconnects is cancelled: dropped if still queued, stopped at the next decode step if
running (`Ticket.cancel`, which a streaming response can use too).

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
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from qwen3vl_eval.backends.base import Reply
from qwen3vl_eval.backends.media_policy import MediaPolicy
from qwen3vl_eval.backends.native import Engine
from qwen3vl_eval.backends.serve_worker import BatchWorker, Cancelled, QueueFull, Ticket
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.jsonio import loads
from qwen3vl_eval.model.sampling import GenerationParams
from qwen3vl_eval.processor.messages import SOURCE_KEYS, item_options, media_items

log = logging.getLogger("qwen3vl_eval.backends.serve")

ROLE_ALIASES = {"developer": "system"}
# Request fields this server cannot honour, with the values that ask for nothing special.
UNSUPPORTED = {"frequency_penalty": (0,), "logit_bias": ({},), "logprobs": (False,), "top_logprobs": (0,),
               "tools": ([],), "tool_choice": ("none", "auto"), "response_format": ({"type": "text"},), "n": (1,),
               "stream": (False,)}


class RequestError(InputError):
    """A request that cannot be served as asked (HTTP 400)."""


@dataclass(frozen=True)
class Limits:
    """Per-request bounds (`serve --help` names the options)."""

    max_body_bytes: int = 32 << 20
    max_images: int = 32
    max_videos: int = 4
    max_pixels: int = 1 << 26  # processed pixels per request (patches x patch area), ~4 images at the released max
    max_tokens: int | None = None  # None: the context left by the prompt
    max_queue: int = 64


# ------------------------------------------------------------------------------------------------ parsing
def _number(body: dict, key: str, kind: type, *, low: float | None = None) -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and kind is int:
        ok = isinstance(value, int) or (abs(value) < 2**63 and float(value).is_integer())
    if not ok:
        raise RequestError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    if low is not None and value < low:
        raise RequestError(f"{key}: must be >= {low}, got {value!r}")
    try:
        return kind(value)
    except OverflowError:
        raise RequestError(f"{key}: {value!r} is out of range") from None


def parse_params(body: dict, defaults: GenerationParams) -> GenerationParams:
    """Generation parameters of a request; fields it leaves out keep `defaults`."""
    for key, neutral in UNSUPPORTED.items():
        value = body.get(key)
        if value is not None and value not in neutral:
            raise RequestError(f"{key}={value!r} is not supported by this server")
    max_tokens = _number(body, "max_completion_tokens", int, low=1)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", int, low=1)
    top_k = _number(body, "top_k", int, low=-1)  # -1 and 0: off (vLLM)
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
        raise RequestError(str(e).replace("max_new_tokens", "max_tokens")) from None


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


def parse_messages(body: dict, policy: MediaPolicy | None = None, limits: Limits | None = None) -> list[dict]:
    """The request's messages as a conversation in the CONTRACTS section 4 format, validated; every media
    source passed through `policy` (default: data URIs only) and counted against `limits`."""
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
        items = media_items(conversation, 0)
    except InputError as e:
        raise RequestError(str(e).replace("conversation 0, message", "message")) from None
    limits = limits or Limits()
    for kind, cap in (("image", limits.max_images), ("video", limits.max_videos)):
        n = sum(item.kind == kind for item in items)
        if n > cap:
            raise RequestError(f"messages: {n} {kind}s in one request; this server takes at most {cap}")
    return police_media(conversation, policy or MediaPolicy())


def police_media(conversation: list[dict], policy: MediaPolicy) -> list[dict]:
    """A copy of a validated conversation whose image and video items hold only what `policy` allows the
    processor to read (a data URI, a confined path or fetched bytes)."""
    out = []
    for m, message in enumerate(conversation):
        content = message["content"]
        if isinstance(content, list):
            content = [_policed_item(item, policy, f"messages[{m}].content[{i}]") for i, item in enumerate(content)]
        out.append({**message, "content": content})
    return out


def _policed_item(item: dict, policy: MediaPolicy, where: str) -> dict:
    kind = item.get("type")
    if kind not in ("image", "video"):
        return item
    value = next(item[k] for k in SOURCE_KEYS[kind] if item.get(k) is not None)
    try:
        source = policy.resolve(value)
    except InputError as e:
        raise RequestError(f"{where}: {e}") from None
    return {"type": kind, kind: source, **item_options(kind, item)}


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


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (RequestError 'too large') past `limit` bytes, announced or streamed."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(f"the request body of {length} bytes is over the {limit} byte limit")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(f"the request body is over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


class BodyTooLarge(RequestError):
    """HTTP 413."""


# ------------------------------------------------------------------------------------------------ app
def create_app(engine: Any, *, model_name: str | None = None, api_key: str | None = None,
               max_batch_size: int = 1, batch_wait_ms: float = 5.0, media: MediaPolicy | None = None,
               limits: Limits | None = None) -> FastAPI:
    """The FastAPI app serving `engine` (anything with the Engine's `chat`, `defaults` and `info`)."""
    name = model_name or str(getattr(engine, "name", "model"))
    limits, media = limits or Limits(), media or MediaPolicy()
    worker = BatchWorker(engine, max_batch_size, batch_wait_ms, max_queue=limits.max_queue,
                         max_pixels=limits.max_pixels)
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
    async def health() -> dict[str, Any]:
        return {"status": "ok", "queued": worker.queued(), **worker.stats}

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
        try:
            params, fit = request_params(body, engine.defaults, limits)
            conversation = parse_messages(body, media, limits)
            reply = await wait_for(request, worker.submit(conversation, params, fit))
        except InputError as e:
            return error_response(400, str(e), "invalid_request_error")
        except QueueFull as e:
            return error_response(429, str(e), "rate_limit_error", {"Retry-After": "1"})
        except Cancelled:
            return error_response(499, "the client closed the request", "cancelled")
        except Exception as e:  # noqa: BLE001 - one line to the client, the traceback in the server log
            return error_response(500, f"internal error: {type(e).__name__}: {e}", "server_error")
        return completion(reply, name)

    return app


def request_params(body: dict, defaults: GenerationParams, limits: Limits) -> tuple[GenerationParams, bool]:
    """The request's generation parameters and whether `max_tokens` was left to the server (then it is the
    default lowered to the context the prompt leaves, `fit_context`). An explicit value over `limits.max_tokens`
    is a RequestError; one beyond the context fails in the engine before anything is allocated."""
    params = parse_params(body, defaults)
    explicit = body.get("max_completion_tokens", body.get("max_tokens")) is not None
    cap = limits.max_tokens
    if cap is not None and params.max_new_tokens > cap:
        if explicit:
            raise RequestError(f"max_tokens: {params.max_new_tokens} is over this server's limit of {cap}")
        params = params.with_overrides(max_new_tokens=cap)
    return params, not explicit


def serve(engine: Engine, *, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
          api_key: str | None = None, max_batch_size: int = 1, batch_wait_ms: float = 5.0,
          log_level: str = "info", media: MediaPolicy | None = None, limits: Limits | None = None) -> None:
    """Run the server until interrupted."""
    import uvicorn

    app = create_app(engine, model_name=model_name, api_key=api_key, max_batch_size=max_batch_size,
                     batch_wait_ms=batch_wait_ms, media=media, limits=limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
