"""Decoding policy: generation parameters, logits processing and token selection.

Order of operations follows transformers' `generate` for the fields it has (repetition penalty, then
temperature, top-k, top-p) and vLLM/OpenAI for presence penalty (subtracted once per token already generated).
Sampling uses the exponential-race trick (argmax of p / Exp(1) noise) with an explicit generator: it is
seeded, reproducible, and needs no host-device synchronisation. Temperature 0 is greedy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from qwen3vl_eval.errors import InputError
from qwen3vl_eval.jsonio import read_object

MAX_NEW_TOKENS = 1 << 24  # a sanity bound; the real one is the model's context (see `check_context`)


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    eos_token_ids: tuple[int, ...] = field(default=())

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0 or self.top_k == 1

    def validate(self) -> GenerationParams:
        """Types and ranges of every field; one InputError naming the first bad one."""
        for name in ("max_new_tokens", "top_k", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"{name} must be an integer, got {value!r}")
        for name in ("temperature", "top_p", "repetition_penalty", "presence_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value!r}")
        eos_ok = all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in self.eos_token_ids)
        checks = [
            (1 <= self.max_new_tokens <= MAX_NEW_TOKENS, "max_new_tokens", f"must be in [1, {MAX_NEW_TOKENS}]"),
            (self.temperature >= 0, "temperature", "must be >= 0"),
            (0 < self.top_p <= 1, "top_p", "must be in (0, 1]"),
            (self.top_k >= 0, "top_k", "must be >= 0 (0 is off)"),
            (self.repetition_penalty > 0, "repetition_penalty", "must be > 0"),
            (abs(self.presence_penalty) <= 100, "presence_penalty", "must be in [-100, 100]"),
            (0 <= self.seed < 2**63, "seed", "must be in [0, 2**63)"),
            (eos_ok, "eos_token_ids", "must be non-negative integers"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise InputError(f"{name} {msg}, got {getattr(self, name)!r}")
        return self

    def with_overrides(self, **overrides: Any) -> GenerationParams:
        """A validated copy with the given fields replaced (None values ignored; `stop` and `eos_token_ids` may
        be a single value or a list). The one way to build parameters from settings: checkpoint defaults, task
        `generation:` keys, command-line flags and request fields all come through here."""
        given = {k: v for k, v in overrides.items() if v is not None}
        for key in ("stop", "eos_token_ids"):
            if key in given:
                v = given[key]
                given[key] = (v,) if isinstance(v, (str, int)) else tuple(v)
        return replace(self, **given).validate()

    @classmethod
    def from_generation_config(cls, path: str | Path | None, **overrides: Any) -> GenerationParams:
        """Defaults from a checkpoint's `generation_config.json` (sampling fields and eos ids), then overrides.

        `do_sample: false` in the file means greedy regardless of its temperature."""
        base: dict[str, Any] = {}
        if path is not None and Path(path).is_file():
            gc = read_object(path)
            names = {f.name for f in fields(cls)}
            base = {k: gc[k] for k in ("temperature", "top_p", "top_k", "repetition_penalty") if k in gc}
            if not gc.get("do_sample", False):
                base["temperature"] = 0.0
            base["eos_token_ids"] = gc.get("eos_token_id")
            if gc.get("max_new_tokens") is not None:
                base["max_new_tokens"] = gc["max_new_tokens"]
            base = {k: v for k, v in base.items() if k in names and v is not None}
        try:
            params = cls().with_overrides(**base)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
        return params.with_overrides(**overrides)


def process_logits(logits: torch.Tensor, params: GenerationParams, seen: torch.Tensor | None,
                   generated: torch.Tensor | None) -> torch.Tensor:
    """Apply penalties and warpers to next-token logits.

    logits: [B, V] float; seen: [B, V] bool, tokens in prompt or output (for the repetition penalty);
    generated: [B, V] counts of tokens generated so far (for the presence penalty)."""
    logits = logits.float()
    if params.repetition_penalty != 1.0 and seen is not None:
        penalised = torch.where(logits > 0, logits / params.repetition_penalty, logits * params.repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    if params.presence_penalty != 0.0 and generated is not None:
        logits = logits - params.presence_penalty * (generated > 0).to(logits.dtype)
    if params.greedy:
        return logits
    logits = logits / params.temperature
    if params.top_k > 0:
        k = min(params.top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum <= (1 - params.top_p)
        drop_sorted[:, -1] = False  # always keep the most likely token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def select_tokens(logits: torch.Tensor, params: GenerationParams, generator: torch.Generator | None) -> torch.Tensor:
    """Next tokens [B] from processed logits [B, V]: argmax when greedy, else an exponential race."""
    if params.greedy:
        return logits.argmax(-1)
    probs = logits.softmax(-1)
    noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / noise).argmax(-1)


def make_generator(params: GenerationParams, device: torch.device) -> torch.Generator | None:
    if params.greedy:
        return None
    return torch.Generator(device=device).manual_seed(params.seed)


def find_stop(text: str, stops: tuple[str, ...]) -> int:
    """Index where the earliest stop string starts in `text`, or -1."""
    hits = [i for s in stops if (i := text.find(s)) >= 0]
    return min(hits) if hits else -1
