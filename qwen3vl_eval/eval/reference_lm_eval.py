"""Headline rules of the lm-evaluation-harness 0.4.13 tasks (gsm8k strict-match / flexible-extract, mmlu
generative), reimplemented from their definitions: the `regex` filter, `take_first`, and `exact_match` with the
tasks' ignore settings. String comparison, as lm-eval does: "1080.00" is not "1080". See `reference_lmms.py`
for the other tasks and `tests/test_reference_scoring.py` for the pinned agreement.
"""

from __future__ import annotations

import re
import string
from typing import Any

from qwen3vl_eval.eval.metrics import scorer
from qwen3vl_eval.eval.parsers import register

# ---------------------------------------------------------------- lm-evaluation-harness (gsm8k, mmlu generative)

INVALID = "[invalid]"
_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEX = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_GSM8K_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")


def lm_eval_regex(text: str, pattern: re.Pattern, group_select: int = 0) -> str:
    """lm-eval's `regex` filter: the `group_select`-th match (of a multi-group pattern, its first non-empty
    group), stripped; "[invalid]" when nothing matches."""
    found = pattern.findall(text)
    if not found:
        return INVALID
    m = found[group_select]
    if isinstance(m, tuple):
        m = next((g for g in m if g), INVALID)
    return m.strip()


def lm_eval_exact_match(pred: str, ref: str, ignore: tuple[str, ...] = (), ignore_case: bool = False,
                        ignore_punctuation: bool = False) -> bool:
    """lm-eval `exact_match`: each ignore regex removed from both, then optional lowercasing and punctuation
    removal, then string equality."""
    for pattern in ignore:
        pred, ref = re.sub(pattern, "", pred), re.sub(pattern, "", ref)
    if ignore_case:
        pred, ref = pred.lower(), ref.lower()
    if ignore_punctuation:
        table = str.maketrans("", "", string.punctuation)
        pred, ref = pred.translate(table), ref.translate(table)
    return pred.rstrip("\0") == ref.rstrip("\0")


@register("gsm8k_lm_eval", version=1, strip=False)
def _gsm8k_lm_eval(text: str, sample: Any) -> dict[str, str] | None:
    """{"strict": strict-match filter output, "flexible": flexible-extract filter output}; None (a parse
    failure, scored 0 as lm-eval scores "[invalid]") when neither finds a number."""
    out = {"strict": lm_eval_regex(text, _STRICT), "flexible": lm_eval_regex(text, _FLEX, -1)}
    return None if out["strict"] == out["flexible"] == INVALID else out


@scorer("gsm8k_lm_eval")
def _gsm8k_lm_eval_score(pred: dict | None, target: str) -> dict[str, float]:
    """exact_match (flexible-extract) and exact_match_strict (strict-match), lm-eval's gsm8k metric settings."""
    pred = pred or {}

    def em(p: str | None) -> float:
        return float(p is not None and lm_eval_exact_match(p, str(target), _GSM8K_IGNORE, ignore_case=True))

    return {"exact_match": em(pred.get("flexible")), "exact_match_strict": em(pred.get("strict"))}


_FIRST_LINE = re.compile(r"^(.*?)(?=\n|$)")
_NO_TRAILING = re.compile(r"^(.*?)\s*$")


@register("mmlu_lm_eval", version=1, strip=False)
def _mmlu_lm_eval(text: str, sample: Any) -> str:
    """lm-eval mmlu_generative `get_response`: the first line, stripped."""
    return lm_eval_regex(lm_eval_regex(text, _FIRST_LINE).strip(), _NO_TRAILING)


@scorer("mmlu_lm_eval")
def _mmlu_lm_eval_score(pred: str | None, target: str) -> dict[str, float]:
    """lm-eval mmlu_generative exact_match against the letter, ignoring case and punctuation."""
    ok = pred is not None and lm_eval_exact_match(pred, str(target), ignore_case=True, ignore_punctuation=True)
    return {"accuracy": float(ok)}
