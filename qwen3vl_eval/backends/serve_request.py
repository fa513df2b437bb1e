"""Reading `serve` requests: the body (bounded), generation parameters, what to return besides the text, and
messages (OpenAI parts or CONTRACTS section 4 items, every media source through a `MediaPolicy`) or raw
prompts (`/v1/completions`). Every refusal is a `RequestError` (HTTP 400; `BodyTooLarge` 413)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from qwen3vl_eval.backends.media_policy import MediaPolicy
from qwen3vl_eval.backends.serve_openai import MAX_LOGPROBS, Wanted
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.sampling import GenerationParams
from qwen3vl_eval.processor.messages import ITEM_OPTIONS, SOURCE_KEYS, item_options, media_items

ROLE_ALIASES = {"developer": "system"}
# Request fields this server cannot honour, with the values that ask for nothing special.
UNSUPPORTED = {"frequency_penalty": (0,), "logit_bias": ({},), "tools": ([],), "tool_choice": ("none", "auto"),
               "response_format": ({"type": "text"},), "best_of": (1,), "suffix": ("",)}


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
    max_n: int = 16  # choices per request (n), and prompts per completions request


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
    """Generation parameters of a request; fields it leaves out keep `defaults`. The default `max_tokens` of a
    completions request is 16 (OpenAI's)."""
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


def mm_processor_kwargs(body: dict, defaults: dict | None = None) -> dict[str, Any]:
    """The media options every item of a request takes unless it sets its own: the server's
    `--mm-processor-kwargs` overridden by the request's `mm_processor_kwargs` (vLLM's names: max_pixels,
    min_pixels, fps, ...; each applies to the kinds that have it)."""
    given = body.get("mm_processor_kwargs")
    if given is not None and not isinstance(given, dict):
        raise RequestError("mm_processor_kwargs: expected an object")
    known = set(ITEM_OPTIONS["image"]) | set(ITEM_OPTIONS["video"])
    unknown = sorted(set(given or {}) - known)
    if unknown:
        raise RequestError(f"mm_processor_kwargs: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return {**(defaults or {}), **(given or {})}


def parse_messages(body: dict, policy: MediaPolicy | None = None, limits: Limits | None = None,
                   mm_defaults: dict | None = None) -> list[dict]:
    """The request's messages as a conversation in the CONTRACTS section 4 format, validated; every media
    source passed through `policy` (default: data URIs only) and counted against `limits`; items without
    their own options take `mm_processor_kwargs` (`mm_defaults`, then the request's)."""
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
    return police_media(conversation, policy or MediaPolicy(), mm_processor_kwargs(body, mm_defaults))


def police_media(conversation: list[dict], policy: MediaPolicy, mm: dict | None = None) -> list[dict]:
    """A copy of a validated conversation whose image and video items hold only what `policy` allows the
    processor to read (a data URI, a confined path or fetched bytes), with the options `mm` under their own."""
    out = []
    for m, message in enumerate(conversation):
        content = message["content"]
        if isinstance(content, list):
            content = [_policed_item(item, policy, f"messages[{m}].content[{i}]", mm or {})
                       for i, item in enumerate(content)]
        out.append({**message, "content": content})
    return out


def _policed_item(item: dict, policy: MediaPolicy, where: str, mm: dict) -> dict:
    kind = item.get("type")
    if kind not in ("image", "video"):
        return item
    value = next(item[k] for k in SOURCE_KEYS[kind] if item.get(k) is not None)
    try:
        source = policy.resolve(value)
    except InputError as e:
        raise RequestError(f"{where}: {e}") from None
    return {"type": kind, kind: source, **item_options(kind, mm, item)}


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


def _flag(body: dict, key: str) -> bool:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise RequestError(f"{key}: expected true or false")
    return bool(value)


def _count(body: dict, key: str, high: int, low: int = 0) -> int | None:
    value = _number(body, key, int, low=low)
    if value is not None and value > high:
        raise RequestError(f"{key}: at most {high}, got {value}")
    return value


@dataclass(frozen=True)
class Shape:
    """How a request wants its answer: choices per prompt, streamed or whole, usage in the last chunk, and
    what to return besides the text."""

    n: int = 1
    stream: bool = False
    include_usage: bool = False
    wanted: Wanted = Wanted()
    echo: bool = False


def parse_shape(body: dict, limits: Limits, *, chat: bool) -> Shape:
    """`n`, `stream`, `stream_options`, logprobs (chat: `logprobs` true + `top_logprobs` k; completions:
    `logprobs` k), vLLM's `prompt_logprobs`, `return_tokens_as_token_ids`, `return_token_ids` and `echo`."""
    n = _count(body, "n", limits.max_n, low=1) or 1
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not stream):
        raise RequestError("stream_options: expected an object, with stream true")
    include_usage = bool(options and _flag(options, "include_usage"))
    if chat:
        top = _count(body, "top_logprobs", MAX_LOGPROBS)
        if top and not _flag(body, "logprobs"):
            raise RequestError("top_logprobs: needs logprobs true")
        logprobs = (top or 0) if _flag(body, "logprobs") else None
    else:
        logprobs = _count(body, "logprobs", MAX_LOGPROBS)
    prompt_logprobs = _count(body, "prompt_logprobs", MAX_LOGPROBS)
    echo = _flag(body, "echo")
    if stream and (prompt_logprobs is not None or echo):
        raise RequestError("prompt_logprobs and echo: not available with stream true")
    if chat and echo:
        raise RequestError("echo: only on /v1/completions here")
    if echo and logprobs is not None and prompt_logprobs is None:
        prompt_logprobs = logprobs  # the prompt's logprobs are echoed too
    wanted = Wanted(logprobs, prompt_logprobs, _flag(body, "return_tokens_as_token_ids"),
                    _flag(body, "return_token_ids"))
    return Shape(n, stream, include_usage, wanted, echo)


def parse_prompts(body: dict, tokenizer: Any) -> list[list[int]]:
    """`/v1/completions` `prompt`: a string, a list of strings, a list of token ids or a list of such lists, as
    token id lists (strings tokenised as they are, nothing added)."""
    prompt = body.get("prompt")
    is_ids = lambda x: isinstance(x, list) and x and all(isinstance(t, int) and not isinstance(t, bool)  # noqa: E731
                                                         for t in x)
    if isinstance(prompt, str) or is_ids(prompt):
        prompt = [prompt]
    if not isinstance(prompt, list) or not prompt or not all(isinstance(p, str) or is_ids(p) for p in prompt):
        raise RequestError("prompt: expected a string, a list of strings, or token ids")
    out = [tokenizer.encode(p) if isinstance(p, str) else list(p) for p in prompt]
    if not all(out):
        raise RequestError("prompt: empty")
    return out
