"""The backend contract: what `run`, `bench`, `serve` and the judge need from a model, and what every backend
(`native.Engine`, `hf.HFBackend`, `openai.OpenAIBackend`) implements."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from qwen3vl_eval.runtime.timing import Timings


@dataclass
class Reply:
    """One conversation's reply."""

    text: str  # the whole decoded reply, special tokens skipped
    token_ids: list[int]  # empty for a server that does not return them
    finish_reason: str  # "stop" or "length"
    reasoning: str | None  # Thinking checkpoints: the text before </think>
    answer: str  # the text after </think> (the whole text when there is none)
    prompt_tokens: int
    # when asked for (`logprobs=k`): per generated token (its logprob, [(id, logprob)] of the k most likely)
    logprobs: list[tuple[float, list[tuple[int, float]]]] | None = None
    # when asked for (`prompt_logprobs=k`): per prompt token, None for the first, else (logprob, rank, top-k)
    prompt_logprobs: list[tuple[float, int, list[tuple[int, float]]] | None] | None = None
    prompt_token_ids: list[int] | None = None  # the prompt as the backend tokenised it, where known


@runtime_checkable
class Backend(Protocol):
    """A model behind one call.

    `chat` answers a batch of conversations (CONTRACTS section 4 messages) with `params`
    (`qwen3vl_eval.model.sampling.GenerationParams`; None: the backend's defaults), relative media paths
    resolved against `base_dir`; `on_tokens(row, new_ids)`, where a backend streams, is called as tokens
    arrive (and may raise to abort). `timings` accumulates over calls (phase seconds and token counts);
    `info()` says what a results file records about the model; `close()` frees it."""

    name: str
    timings: Timings

    def chat(self, conversations: list, params: Any = None, *, base_dir: str | os.PathLike | None = None,
             on_tokens: Callable[[int, list[int]], None] | None = None) -> list[Reply]: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
