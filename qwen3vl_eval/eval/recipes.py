"""Generation recipes as data, and the one precedence rule that turns settings into a run's generation keys.

Recipes (`RECIPES`):
- `greedy`: greedy decoding, no penalties, the task's own token budget (what lmms-eval does); the default.
- `qwen-instruct` / `qwen-thinking`: the "Generation Hyperparameters" Qwen publishes for its reported numbers,
  read from QwenLM/Qwen3-VL README.md at commit 9658872 (lines 1142-1164; `greedy='false'` there means sampling;
  `out_seq_length` is the token budget). The Thinking temperature is 0.6 in that README (an unmerged branch
  commit, 0f2afbe, proposes 0.8; VLMEvalKit uses 1.0).
- `checkpoint`: nothing of its own, so the checkpoint's `generation_config.json` shows through.

Precedence, highest first (`resolve`): an explicit `run` flag > the recipe (`--recipe`, else the task's
`recipe:`, else `qwen-thinking` for a Thinking checkpoint) > the task YAML's `generation:` > the default recipe
`greedy` (only when no recipe is named) > the checkpoint's `generation_config.json`. So a task's own sampling
keys take effect under the default, and a named recipe overrides them; any flag given overrides everything."""

from __future__ import annotations

from typing import Any

from qwen3vl_eval.errors import InputError

SAMPLING_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty")
RECIPES: dict[str, dict[str, Any]] = {
    "greedy": {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "presence_penalty": 0.0},
    "qwen-instruct": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.0,
                      "presence_penalty": 1.5, "max_new_tokens": 32768, "seed": 3407},
    "qwen-thinking": {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "repetition_penalty": 1.0,
                      "presence_penalty": 0.0, "max_new_tokens": 40960, "seed": 1234},
    "checkpoint": {},
}
DEFAULT = "greedy"
THINKING_DEFAULT = "qwen-thinking"


def check_recipe(name: str, where: str = "--recipe") -> str:
    """`name` when it is a known recipe; InputError naming `where` and the known names otherwise."""
    if name not in RECIPES:
        raise InputError(f"{where} {name}: unknown recipe (known: {', '.join(RECIPES)})")
    return name


def chosen_recipe(cli: str | None, task: str | None, thinking: bool) -> tuple[str | None, str]:
    """(the named recipe or None, where it came from): `--recipe`, the task's `recipe:`, a Thinking checkpoint's
    default, or none (the default `greedy` then sits below the task's keys)."""
    if cli is not None:
        return check_recipe(cli), "--recipe"
    if task is not None:
        return check_recipe(task, "recipe:"), "task recipe:"
    if thinking:
        return THINKING_DEFAULT, "Thinking checkpoint default"
    return None, f"default ({DEFAULT})"


def resolve(*, flags: dict[str, Any], recipe: str | None, task: dict[str, Any],
            checkpoint: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The generation keys of one task and, per key, which layer set it (`flag`, `recipe NAME`, `task`,
    `default greedy`, `checkpoint`). None values in `flags` mean "not given"."""
    layers: list[tuple[str, dict[str, Any]]] = [("checkpoint", checkpoint)]
    if recipe is None:
        layers.append((f"default {DEFAULT}", RECIPES[DEFAULT]))
    layers.append(("task", task))
    if recipe is not None:
        layers.append((f"recipe {recipe}", RECIPES[recipe]))
    layers.append(("flag", {k: v for k, v in flags.items() if v is not None}))
    out: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, values in layers:
        for k, v in values.items():
            out[k], source[k] = v, name
    return out, source
