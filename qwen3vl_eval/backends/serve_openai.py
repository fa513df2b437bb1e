"""The response objects of `serve` in the OpenAI formats, with vLLM's extensions: chat completions (whole and
as server-sent-event chunks), legacy completions, logprobs and `prompt_logprobs`.

Logprobs (`Reply.logprobs`) come from the decoding's raw logits (vLLM's default `raw_logprobs`). Token strings
are the token decoded alone with special tokens kept, or `token_id:<id>` with `return_tokens_as_token_ids`
(vLLM's spelling), which a client maps back to ids without a tokenizer. `prompt_logprobs` follow vLLM: one
entry per prompt token, None for the first, else `{"<id>": {"logprob", "rank", "decoded_token"}}` holding the
prompt token and the k most likely; top-level in a chat response, per choice in a completions response.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from qwen3vl_eval.backends.base import Reply

MAX_LOGPROBS = 20  # top_logprobs / logprobs / prompt_logprobs at most (vLLM's default --max-logprobs)


@dataclass(frozen=True)
class Wanted:
    """What a request asked to get back besides the text."""

    logprobs: int | None = None  # None: no logprobs; k: the chosen token's logprob and the k most likely
    prompt_logprobs: int | None = None
    token_ids_as_strings: bool = False  # return_tokens_as_token_ids
    prompt_token_ids: bool = False  # return_token_ids (vLLM): the prompt's token ids in the response


class TokenText:
    """Token ids as the strings a response carries."""

    def __init__(self, tokenizer: Any, as_ids: bool) -> None:
        self.tokenizer, self.as_ids = tokenizer, as_ids

    def __call__(self, token_id: int) -> str:
        if self.as_ids or self.tokenizer is None:
            return f"token_id:{token_id}"
        return self.tokenizer.decode([token_id], skip_special_tokens=False)


def _entry(text: TokenText, token_id: int, logprob: float) -> dict[str, Any]:
    s = text(token_id)
    return {"token": s, "logprob": logprob, "bytes": list(s.encode("utf-8", errors="replace"))}


def chat_logprobs(reply: Reply, text: TokenText, k: int, start: int = 0) -> dict[str, Any]:
    """The OpenAI chat `logprobs` object of a reply's tokens from `start`."""
    content = []
    for token_id, (lp, top) in zip(reply.token_ids[start:], (reply.logprobs or [])[start:]):
        content.append({**_entry(text, token_id, lp), "top_logprobs": [_entry(text, i, v) for i, v in top[:k]]})
    return {"content": content, "refusal": None}


def completion_logprobs(token_ids: list[int], logprobs: list, text: TokenText, k: int,
                        offset: int = 0) -> dict[str, Any]:
    """The legacy completions `logprobs` object (tokens, token_logprobs, top_logprobs, text_offset); an entry of
    `logprobs` is (logprob, top) or None (the first prompt token)."""
    tokens, lps, tops, offsets = [], [], [], []
    for token_id, entry in zip(token_ids, logprobs):
        s = text(token_id)
        tokens.append(s)
        offsets.append(offset)
        offset += len(s)
        if entry is None:
            lps.append(None)
            tops.append(None)
            continue
        lps.append(entry[0])
        top = {text(i): v for i, v in entry[1][:k]}
        top.setdefault(s, entry[0])
        tops.append(top)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def prompt_logprobs(reply: Reply, prompt_ids: list[int], tokenizer: Any, k: int) -> list[dict | None]:
    """vLLM's `prompt_logprobs`: per prompt token None (the first) or {"<id>": {logprob, rank, decoded_token}}."""
    out: list[dict | None] = []
    for token_id, entry in zip(prompt_ids, reply.prompt_logprobs or []):
        if entry is None:
            out.append(None)
            continue
        lp, rank, top = entry
        ranked = {i: (v, r) for r, (i, v) in enumerate(top[:k], 1)}
        ranked.setdefault(token_id, (lp, rank))
        decode = (lambda i: tokenizer.decode([i], skip_special_tokens=False)) if tokenizer else str
        out.append({str(i): {"logprob": v, "rank": r, "decoded_token": decode(i)} for i, (v, r) in ranked.items()})
    return out


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def chat_completion(replies: list[Reply], model: str, wanted: Wanted = Wanted(), tokenizer: Any = None,
                    prompt_ids: list[int] | None = None) -> dict[str, Any]:
    """The chat.completion object of a request's replies (one per choice). Each choice also carries
    `token_ids` (the generated ids, eos included), as vLLM does with `return_token_ids`."""
    text = TokenText(tokenizer, wanted.token_ids_as_strings)
    choices = []
    for i, reply in enumerate(replies):
        choice = {"index": i, "message": {"role": "assistant", "content": reply.text},
                  "logprobs": chat_logprobs(reply, text, wanted.logprobs) if wanted.logprobs is not None else None,
                  "finish_reason": reply.finish_reason, "token_ids": reply.token_ids}
        choices.append(choice)
    out = {"id": new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
           "choices": choices,
           "usage": usage(replies[0].prompt_tokens, sum(len(r.token_ids) for r in replies))}
    if wanted.prompt_logprobs is not None and prompt_ids is not None:
        out["prompt_logprobs"] = prompt_logprobs(replies[0], prompt_ids, tokenizer, wanted.prompt_logprobs)
    if wanted.prompt_token_ids and prompt_ids is not None:
        out["prompt_token_ids"] = prompt_ids
    return out


def completions(groups: list[tuple[list[int], list[Reply]]], model: str, wanted: Wanted, tokenizer: Any,
                echo: bool) -> dict[str, Any]:
    """The text_completion object: per prompt (its ids and its n replies) n choices, indexed prompt-major."""
    text = TokenText(tokenizer, wanted.token_ids_as_strings)
    choices, prompt_tokens, completion_tokens = [], 0, 0
    for prompt_ids, replies in groups:
        prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=False) if echo else ""
        prompt_tokens += len(prompt_ids)
        for reply in replies:
            completion_tokens += len(reply.token_ids)
            logprobs = None
            if wanted.logprobs is not None:
                ids, entries = list(reply.token_ids), [(lp, top) for lp, top in reply.logprobs or []]
                if echo:
                    ids = prompt_ids + ids
                    entries = [None if e is None else (e[0], e[2]) for e in reply.prompt_logprobs or []] + entries
                logprobs = completion_logprobs(ids, entries, text, wanted.logprobs)
            choice = {"index": len(choices), "text": prompt_text + reply.text, "logprobs": logprobs,
                      "finish_reason": reply.finish_reason, "token_ids": reply.token_ids}
            if wanted.prompt_logprobs is not None:
                choice["prompt_logprobs"] = prompt_logprobs(reply, prompt_ids, tokenizer, wanted.prompt_logprobs)
            if wanted.prompt_token_ids:
                choice["prompt_token_ids"] = prompt_ids
            choices.append(choice)
    return {"id": new_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage(prompt_tokens, completion_tokens)}


def sse(obj: Any) -> str:
    """One server-sent event carrying `obj` as JSON (`[DONE]` as is)."""
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n"


class ChunkWriter:
    """The chunks of one streamed response: `chat.completion.chunk` (deltas) or `text_completion` (text)."""

    def __init__(self, model: str, chat: bool) -> None:
        self.chat = chat
        self.base = {"id": new_id("chatcmpl" if chat else "cmpl"),
                     "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": int(time.time()), "model": model}

    def choice(self, index: int, text: str | None, *, role: bool = False, logprobs: Any = None,
               finish_reason: str | None = None, token_ids: list[int] | None = None) -> str:
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            body = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        else:
            body = {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": finish_reason}
        if token_ids is not None:
            body["token_ids"] = token_ids
        return sse({**self.base, "choices": [body], "usage": None})

    def usage(self, prompt_tokens: int, completion_tokens: int) -> str:
        return sse({**self.base, "choices": [], "usage": usage(prompt_tokens, completion_tokens)})

    @staticmethod
    def error(status: int, message: str, kind: str) -> str:
        return sse({"error": {"message": message, "type": kind, "code": status}})


class TextStream:
    """Incremental text of one choice's tokens: what is safe to send so far (no split UTF-8 character, and the
    last `hold` characters kept back while a stop string may still cut them)."""

    def __init__(self, tokenizer: Any, hold: int) -> None:
        self.tokenizer, self.hold = tokenizer, hold
        self.ids: list[int] = []
        self.sent = ""

    def add(self, ids: list[int]) -> str:
        self.ids += ids
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        safe = text[: max(len(self.sent), len(text) - self.hold)]
        if not safe.startswith(self.sent):
            return ""
        delta, self.sent = safe[len(self.sent):], safe
        return delta

    def finish(self, final: str) -> str:
        """The rest of the final text (the whole reply, after stop strings) not yet sent."""
        return final[len(self.sent):] if final.startswith(self.sent) else ""
