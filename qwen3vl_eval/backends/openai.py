"""`OpenAIBackend`: the Engine's `chat` interface over an OpenAI-compatible chat-completions server (vLLM,
SGLang, `qwen3vl-eval serve`, hosted APIs).

Each conversation is one request; up to `concurrency` run at once. Media travel inside the request
(`qwen3vl_eval.backends.openai_messages`):
- images as data URLs of the source bytes (files, bytes, data URIs: the server decodes the same bytes), or of a
  lossless PNG for in-memory PIL images (converted to RGB as the native processor does); http(s) URLs as given.
- videos, `video_mode="url"`: a `video_url` (a data URL of the file, or a `file://` URL with
  `video_url_scheme="file"` for a server on the same filesystem; http(s) URLs as given). The server samples.
- videos, `video_mode="frames"`: sampled here with this package's video sampling (the checkpoint's
  `video_preprocessor_config.json` from `processor`, or Qwen3-VL's defaults), each frame group sent as a
  `<t seconds>` text part followed by its frames as PNG `image_url` parts, the timestamps being exactly the
  native prompt's. Frames are already resized to the clip's pixel budget. Works with any image-capable server;
  the model sees images, not video tokens, so replies are close to, not equal to, native video replies.

Failures are retried (`retries` times after the first try) with exponential backoff and jitter on timeouts,
connection errors, HTTP 429 and 5xx, honouring `Retry-After`. Other HTTP errors raise at once. The API key is
read from the environment variable `api_key_env` when a request is sent and is kept only in the HTTP headers:
never in `info`, `repr`, logs or results.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from qwen3vl_eval.backends.base import Reply
from qwen3vl_eval.backends.openai_messages import to_openai_messages
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.sampling import GenerationParams
from qwen3vl_eval.processor.chat import split_reasoning
from qwen3vl_eval.processor.messages import as_batch
from qwen3vl_eval.processor.video import VideoSettings
from qwen3vl_eval.runtime.provenance import software_versions
from qwen3vl_eval.runtime.timing import Timings

VIDEO_MODES = ("frames", "url")
VIDEO_URL_SCHEMES = ("data", "file")
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504}) | frozenset(range(520, 530))


class BackendError(RuntimeError):
    """A request that failed after its retries (server errors, timeouts, connection failures)."""


@dataclass
class RequestRecord:
    """One chat-completions request: wall time over all attempts, attempts made, token usage."""

    latency_s: float
    attempts: int
    status: int | None  # the last HTTP status, None when no response came
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


def request_body(messages: list[dict], params: GenerationParams, model: str, *,
                 openai_fields_only: bool = False) -> dict[str, Any]:
    """The chat-completions body for `params`. Every sampling field is explicit, so server-side defaults (vLLM
    reads the checkpoint's generation_config.json) never leak in; top_k 0 (off) is sent as -1.
    `openai_fields_only` leaves out the fields OpenAI's own API rejects (top_k, repetition_penalty, ignore_eos)."""
    body: dict[str, Any] = {
        "model": model, "messages": messages, "max_tokens": params.max_new_tokens,
        "temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k if params.top_k > 0 else -1,
        "seed": params.seed, "presence_penalty": params.presence_penalty,
        "repetition_penalty": params.repetition_penalty,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if params.ignore_eos:
        body["ignore_eos"] = True
    if openai_fields_only:
        for key in ("top_k", "repetition_penalty", "ignore_eos"):
            body.pop(key, None)
    return body


def reply_from_response(data: dict[str, Any]) -> Reply:
    """A Reply from a chat-completions response. `token_ids` are filled when the server returns them (as
    `qwen3vl-eval serve` does); a separate `reasoning_content` (vLLM/SGLang reasoning parsers) is joined back
    as `<think>reasoning</think>answer`, so `text` holds the whole reply either way."""
    try:
        choice = data["choices"][0]
        message = choice.get("message") or {}
    except (KeyError, IndexError, TypeError):
        raise BackendError(f"malformed response (no choices): {json.dumps(data)[:200]}") from None
    content = message.get("content") or ""
    reasoning_field = message.get("reasoning_content") or message.get("reasoning")
    text = f"<think>\n{reasoning_field}\n</think>\n\n{content}" if reasoning_field else content
    reasoning, answer = split_reasoning(text)
    usage = data.get("usage") or {}
    token_ids = choice.get("token_ids") or []
    finish = choice.get("finish_reason") or "stop"
    return Reply(text, list(token_ids), "length" if finish == "length" else "stop", reasoning, answer,
                 int(usage.get("prompt_tokens") or 0))


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), None when absent or unreadable."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _redact_url(url: str) -> str:
    """`url` without user:password and query string (neither belongs in results)."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


# ------------------------------------------------------------------------------------------------ backend
class OpenAIBackend:
    """Replies from an OpenAI-compatible chat-completions server, with the Engine's `chat` interface."""

    def __init__(self, base_url: str, *, api_key_env: str | None = None, served_model_name: str | None = None,
                 concurrency: int = 4, timeout: float = 120.0, retries: int = 3, video_mode: str = "frames",
                 video_url_scheme: str = "data", processor: str | os.PathLike | None = None,  # a folder
                 backoff: float = 1.0, max_backoff: float = 60.0, openai_fields_only: bool = False) -> None:
        if video_mode not in VIDEO_MODES:
            raise InputError(f"video_mode must be one of {', '.join(VIDEO_MODES)}, got {video_mode!r}")
        if video_url_scheme not in VIDEO_URL_SCHEMES:
            raise InputError(f"video_url_scheme must be one of {', '.join(VIDEO_URL_SCHEMES)}, "
                             f"got {video_url_scheme!r}")
        if concurrency < 1 or retries < 0 or timeout <= 0:
            raise InputError("concurrency must be >= 1, retries >= 0 and timeout > 0")
        if not base_url.startswith(("http://", "https://")):
            raise InputError(f"--base-url {_redact_url(base_url)!r}: expected an http(s) URL")
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise InputError(f"the API key environment variable {api_key_env} is not set")
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.video_mode = video_mode
        self.video_url_scheme = video_url_scheme
        self.video_settings = _video_settings(processor)
        self.openai_fields_only = openai_fields_only  # for hosted APIs that reject top_k and repetition_penalty
        self._model = served_model_name
        self._client = httpx.Client(timeout=self.timeout, limits=httpx.Limits(max_connections=concurrency))
        self._lock = threading.Lock()
        self.timings = Timings()
        self.requests: list[RequestRecord] = []

    def __repr__(self) -> str:
        return (f"OpenAIBackend(base_url={_redact_url(self.base_url)!r}, model={self._model!r}, "
                f"video_mode={self.video_mode!r}, concurrency={self.concurrency})")

    @property
    def name(self) -> str:
        """The served model name when known, else the server's address."""
        return self._model or _redact_url(self.base_url)

    @property
    def model(self) -> str:
        """The served model name: as given, else the first id the server's /v1/models lists."""
        if self._model is None:
            data, _ = self._send("GET", "/models", None)
            try:
                self._model = str(data["data"][0]["id"])
            except (KeyError, IndexError, TypeError):
                raise BackendError(f"{_redact_url(self.base_url)}/models lists no model; pass served_model_name"
                                   ) from None
        return self._model

    def info(self) -> dict[str, Any]:
        """What a results file records about this backend (no secrets)."""
        return {"backend": "openai", "model": self._model, "base_url": _redact_url(self.base_url),
                "api_key_env": self.api_key_env, "video_mode": self.video_mode,
                "video_url_scheme": self.video_url_scheme if self.video_mode == "url" else None,
                "concurrency": self.concurrency, "timeout_s": self.timeout, "retries": self.retries,
                "openai_fields_only": self.openai_fields_only,
                "versions": software_versions()}

    def latency(self) -> dict[str, float]:
        """Request latency summary in seconds (successful requests): n, mean, p50, p90, max."""
        xs = sorted(r.latency_s for r in self.requests if r.error is None)
        if not xs:
            return {"n": 0}
        pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
        return {"n": len(xs), "mean": sum(xs) / len(xs), "p50": pick(0.5), "p90": pick(0.9), "max": xs[-1]}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------------- chat
    def chat(self, conversations: list, params: GenerationParams | None = None, *,
             base_dir: str | os.PathLike | None = None, on_tokens=None) -> list[Reply]:
        """One reply per conversation (CONTRACTS section 4 messages), requests sent concurrently. Greedy with
        128 new tokens when `params` is None. Raises InputError for a request the server rejects (4xx) and
        BackendError when retries run out. `on_tokens` is part of the backend contract; replies arrive whole
        here (no streaming), so it is not called."""
        params = (params or GenerationParams()).validate()
        batch, _ = as_batch(conversations)
        bodies = [request_body(to_openai_messages(conv, base_dir=base_dir, video_mode=self.video_mode,
                                                  video_url_scheme=self.video_url_scheme,
                                                  video_settings=self.video_settings, index=i), params, self.model,
                               openai_fields_only=self.openai_fields_only)
                  for i, conv in enumerate(batch)]
        t0 = time.perf_counter()
        if len(bodies) == 1 or self.concurrency == 1:
            replies = [self._complete(b) for b in bodies]
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(bodies))) as pool:
                replies = list(pool.map(self._complete, bodies))
        self.timings.extra["wall_s"] = self.timings.extra.get("wall_s", 0.0) + time.perf_counter() - t0
        return replies

    def respond(self, conversation: list[dict], params: GenerationParams | None = None, *,
                base_dir: str | os.PathLike | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole chat-completions response (JSON) to one conversation, with `extra` fields added to the
        request body (e.g. `logprobs`, `top_logprobs`, vLLM's `prompt_logprobs`, `return_tokens_as_token_ids`,
        `mm_processor_kwargs`). Errors as `chat`."""
        params = (params or GenerationParams()).validate()
        messages = to_openai_messages(conversation, base_dir=base_dir, video_mode=self.video_mode,
                                      video_url_scheme=self.video_url_scheme, video_settings=self.video_settings)
        body = {**request_body(messages, params, self.model, openai_fields_only=self.openai_fields_only),
                **(extra or {})}
        data, record = self._send("POST", "/chat/completions", body)
        usage = data.get("usage") or {}
        with self._lock:
            record.prompt_tokens = usage.get("prompt_tokens")
            record.completion_tokens = usage.get("completion_tokens")
        return data

    def models(self) -> dict[str, Any]:
        """The server's `/v1/models` answer (JSON)."""
        return self._send("GET", "/models", None)[0]

    def _complete(self, body: dict) -> Reply:
        data, record = self._send("POST", "/chat/completions", body)
        reply = reply_from_response(data)
        usage = data.get("usage") or {}
        with self._lock:
            record.prompt_tokens = usage.get("prompt_tokens")
            record.completion_tokens = usage.get("completion_tokens")
            self.timings.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.timings.generated_tokens += int(usage.get("completion_tokens") or len(reply.token_ids))
        return reply

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise InputError(f"the API key environment variable {self.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _send(self, method: str, path: str, body: dict | None) -> tuple[dict, RequestRecord]:
        """One request with retries; returns the parsed JSON response and the request's record."""
        url = self.base_url + path
        t0 = time.perf_counter()
        status: int | None = None
        error = ""
        attempt = 0
        while True:
            attempt += 1
            wait = None
            try:
                response = self._client.request(method, url, json=body, headers=self._headers())
                status = response.status_code
                if status < 400:
                    data = response.json()
                    if not isinstance(data, dict):
                        raise ValueError("not a JSON object")
                    record = RequestRecord(time.perf_counter() - t0, attempt, status)
                    self._record(record)
                    return data, record
                error = f"HTTP {status}: {_error_message(response)}"
                if status not in RETRY_STATUS:
                    self._record(RequestRecord(time.perf_counter() - t0, attempt, status, error=error))
                    raise InputError(f"{_redact_url(url)}: {error}")
                wait = retry_after(response.headers)
            except httpx.TimeoutException:
                status, error = None, f"timed out after {self.timeout:g} s"
            except httpx.TransportError as e:
                status, error = None, f"{type(e).__name__}: {e}"
            except ValueError as e:  # a 2xx whose body is not JSON
                status, error = status, f"bad JSON in the response ({e})"
            if attempt > self.retries:
                self._record(RequestRecord(time.perf_counter() - t0, attempt, status, error=error))
                raise BackendError(f"{_redact_url(url)}: {error} (after {attempt} attempt(s))")
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random())
            with self._lock:
                self.timings.extra["retries"] = self.timings.extra.get("retries", 0) + 1
            time.sleep(min(wait, self.max_backoff))

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)
            self.timings.extra["request_s"] = self.timings.extra.get("request_s", 0.0) + record.latency_s
            self.timings.extra["requests"] = self.timings.extra.get("requests", 0) + 1


def _error_message(response: httpx.Response) -> str:
    """The server's error message (OpenAI `{"error": {"message": ...}}`, FastAPI `{"detail": ...}`, or text)."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if "detail" in data:
            return str(data["detail"])[:300]
        if "message" in data:
            return str(data["message"])[:300]
    return json.dumps(data)[:300]


def _video_settings(processor: str | os.PathLike | None) -> VideoSettings:
    """Frame sampling settings: a checkpoint folder's video_preprocessor_config.json, else Qwen3-VL's defaults."""
    if processor is None:
        return VideoSettings.from_folder(Path(__file__).parents[1] / "assets" / "qwen3vl")
    if not (Path(processor) / "config.json").is_file():
        raise InputError(f"{processor}: not a checkpoint folder (no config.json)")
    return VideoSettings.from_folder(processor)
