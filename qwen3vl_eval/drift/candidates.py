"""Candidates: where the greedy reply under test comes from, with per-step logprobs in one shape (`Sample`).

- `NativeCandidate`: this package's `Engine` in another configuration (dtype, device, CUDA graph, compile);
  logprobs come from its own decoding (`generate(logprobs=k)`), prompt logprobs from its own forward.
- `ServerCandidate`: an OpenAI-compatible chat-completions server (vLLM, `qwen3vl-eval serve`). One request per
  sample, greedy, with `logprobs: true`, `top_logprobs: k`, and vLLM's extensions `return_tokens_as_token_ids`
  (tokens come back as `token_id:<id>`), `return_token_ids` (the generated and prompt token ids) and, unless
  refused, `prompt_logprobs: k`. A server that ignores `return_tokens_as_token_ids` is read through the
  reference tokenizer: a token string that is exactly one token (the vocabulary entry, or the decoded text of
  one id) maps to that id; anything else is an error naming the flag the server lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qwen3vl_eval.backends.openai import OpenAIBackend
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.sampling import GenerationParams

TopK = list[tuple[int, float]]


@dataclass
class Sample:
    """One candidate reply: per generated token its id, logprob and top-k; what the candidate says about the
    prompt (its length, ids and per-position logprobs) where it says it."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    top: list[TopK]
    finish_reason: str
    prompt_tokens: int | None = None
    prompt_token_ids: list[int] | None = None
    # per prompt token, None for the first, else {id: (logprob, rank)} for the prompt token and the k most likely
    prompt_logprobs: list[dict[int, tuple[float, int | None]] | None] | None = None
    notes: list[str] = field(default_factory=list)


class NativeCandidate:
    """This package's engine as the candidate."""

    kind = "native"

    def __init__(self, engine: Any, top_k: int) -> None:
        self.engine, self.top_k = engine, top_k

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.engine.info()}

    def reply(self, conversation: list[dict], params: GenerationParams, *, prompt: bool) -> Sample:
        r = self.engine.chat([conversation], params, logprobs=self.top_k,
                             prompt_logprobs=self.top_k if prompt else None)[0]
        plp = None
        if r.prompt_logprobs is not None:
            plp = [None if e is None else {**{i: (v, k) for k, (i, v) in enumerate(e[2], 1)}, tid: (e[0], e[1])}
                   for tid, e in zip(r.prompt_token_ids, r.prompt_logprobs)]
        return Sample(r.text, r.token_ids, [lp for lp, _ in r.logprobs], [t for _, t in r.logprobs], r.finish_reason,
                      r.prompt_tokens, r.prompt_token_ids, plp)

    def close(self) -> None:
        self.engine.close()


class ServerCandidate:
    """An OpenAI-compatible server as the candidate (see the module docstring for what is asked)."""

    kind = "server"

    def __init__(self, backend: OpenAIBackend, tokenizer: Any, top_k: int, mm_processor_kwargs: dict | None = None
                 ) -> None:
        self.backend, self.tokenizer, self.top_k = backend, tokenizer, top_k
        self.mm = mm_processor_kwargs
        self.prompt_logprobs_offered: bool | None = None  # unknown until the first request
        self._by_text: dict[str, int] | None = None

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.backend.info(), "models": self.backend.models(),
                "prompt_logprobs_offered": self.prompt_logprobs_offered,
                "mm_processor_kwargs": self.mm}

    def reply(self, conversation: list[dict], params: GenerationParams, *, prompt: bool) -> Sample:
        extra: dict[str, Any] = {"logprobs": True, "top_logprobs": self.top_k, "return_tokens_as_token_ids": True,
                                 "return_token_ids": True}
        if self.mm:
            extra["mm_processor_kwargs"] = self.mm
        ask_prompt = prompt and self.prompt_logprobs_offered is not False
        if ask_prompt:
            extra["prompt_logprobs"] = self.top_k
        try:
            data = self.backend.respond(conversation, params, extra=extra)
        except InputError as e:
            if not ask_prompt or "prompt_logprobs" not in str(e):
                raise
            self.prompt_logprobs_offered = False  # refused: ask no more
            extra.pop("prompt_logprobs")
            data = self.backend.respond(conversation, params, extra=extra)
        return self.parse(data, asked_prompt=ask_prompt and "prompt_logprobs" in extra)

    def parse(self, data: dict, *, asked_prompt: bool) -> Sample:
        """A Sample from a chat-completions response with logprobs."""
        where = f"{self.backend.base_url}/chat/completions"
        try:
            choice = data["choices"][0]
            content = (choice.get("logprobs") or {}).get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise InputError(f"{where}: malformed response (no choices)") from None
        if not content and choice.get("message", {}).get("content"):
            raise InputError(f"{where}: the server returned no logprobs (it must accept logprobs/top_logprobs)")
        ids = [self.token_id(e) for e in content or []]
        top = [[(self.token_id(t), float(t["logprob"])) for t in e.get("top_logprobs") or []] for e in content or []]
        notes = []
        given = choice.get("token_ids")
        if given and list(given) != ids:
            notes.append("token_ids differ from the logprobs' tokens; the logprobs' are used")
        usage = data.get("usage") or {}
        plp = None
        if asked_prompt:
            raw = data.get("prompt_logprobs")
            if raw is None:
                self.prompt_logprobs_offered = False
            else:
                self.prompt_logprobs_offered = True
                plp = [None if e is None else _prompt_entry(e) for e in raw]
        return Sample(choice.get("message", {}).get("content") or "", ids, [float(e["logprob"]) for e in content or []],
                      top, choice.get("finish_reason") or "stop", usage.get("prompt_tokens"),
                      data.get("prompt_token_ids"), plp, notes)

    def token_id(self, entry: dict) -> int:
        token = entry.get("token")
        if isinstance(token, str) and token.startswith("token_id:") and token[9:].lstrip("-").isdigit():
            return int(token[9:])
        found = self.tokenizer.token_to_id(token) if isinstance(token, str) else None
        if found is None and isinstance(token, str):
            found = self._text_map().get(token)
        if found is None:
            raise InputError(f"{self.backend.base_url}: token {token!r} maps to no single token id; the server "
                             "must honour return_tokens_as_token_ids (vLLM does) or return vocabulary tokens")
        return found

    def _text_map(self) -> dict[str, int]:
        if self._by_text is None:
            n = self.tokenizer.vocab_size
            self._by_text = {}
            for i in range(n):
                self._by_text.setdefault(self.tokenizer.decode([i], skip_special_tokens=False), i)
        return self._by_text

    def close(self) -> None:
        self.backend.close()


def _prompt_entry(entry: dict) -> dict[int, tuple[float, int | None]]:
    """vLLM's prompt logprob entry {"<id>": {"logprob", "rank", "decoded_token"}} as {id: (logprob, rank)}."""
    return {int(k): (float(v["logprob"]), v.get("rank")) for k, v in entry.items()}
