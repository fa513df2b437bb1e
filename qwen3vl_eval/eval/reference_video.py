"""Headline rules of the video benchmarks of issue #16, reimplemented from lmms-eval 0.7.3's task utils.

- `mvbench` (`tasks/mvbench/utils.py`): the reply and the answer letter are each normalised (a leading "X."
  option line gives X; else EvalAI punctuation, quotes and brackets stripped, lowercased, and the first standalone
  letter A-E, case-insensitive, so an article "a" reads as A; else the normalised text) and compared. The accuracy
  counts only non-empty replies (`mvbench_aggregate_results`): an empty reply is marked `unanswered` and left out
  of `mvbench_accuracy`, per subtask and overall (`mvbench_accuracy_flexible` counts it as wrong).
- `longvideobench_val` (`tasks/longvideobench/utils.py`): a few "The answer is" prefixes are removed and the first
  capital A-E anywhere is the choice; without one the reference draws a random letter, made here a seeded draw
  per sample id (`seeded_guess`), flagged `random_fallback` and counted.
- `mlvu_dev` and `lvbench` use lmms-eval's `extract_mcq_answer` over A-D (`reference_lmms.lmms_mcq_letter`),
  compared to the stored answer exactly. MLVU's headline is the mean of the per-task-type accuracies
  (`mlvu_aggregate_results_dev`): metric `m_avg`, over the task types present (the reference divides by its
  seven types even when a subset lacks some; on the full dev set the two agree).

`tests/test_tasks_video_reference.py` pins these to the real lmms-eval code (reference/scoring).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from qwen3vl_eval.eval.metrics import _COMMA_STRIP, _PUNCT, METRICS, Metric, scorer
from qwen3vl_eval.eval.parsers import LETTERS, register
from qwen3vl_eval.eval.reference_lmms import MMMU_FALLBACK_SEED

GROUP = "task_type="  # per-sample marker key of a sample's group, read by `MacroMean`


def seeded_guess(letters: str | list[str], sample_id: str) -> str:
    """The reference's random letter, as a deterministic draw per sample id (the MMMU fallback seed)."""
    return random.Random(f"{MMMU_FALLBACK_SEED}:{sample_id}").choice(list(letters))


# ---------------------------------------------------------------- MVBench

_OPTION_LINE = re.compile(r"^([A-E])\.\s*(.+)$", re.IGNORECASE)
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_STANDALONE = re.compile(r"\b([A-E])\b", re.IGNORECASE)


def mvbench_normalize(text: str) -> str:
    """MVBench `mcq_acc`'s reading of a reply or an answer: its option letter, else its normalised text."""
    m = _OPTION_LINE.match(text.strip())
    if m:
        return m.group(1).upper()
    t = text.replace("\n", " ").replace("\t", " ").strip()
    out = t
    for p in _PUNCT:
        out = out.replace(p, "" if (p + " " in t or " " + p in t) or _COMMA_STRIP.search(t) else " ")
    out = _PERIOD.sub("", out, count=32)  # the reference passes re.UNICODE (32) where `count` goes
    out = out.strip("'").strip('"').strip(")").strip("(").strip().lower()
    m = _STANDALONE.search(out)
    return m.group(1).upper() if m else out


@register("mvbench_lmms", version=2)  # stripped, as ConfigurableTask.process_results does
def _mvbench(text: str, sample: Any) -> str | None:
    """The normalised reply (a letter, or text that matches no letter); None for an empty (or blank) reply."""
    return mvbench_normalize(text) if text != "" else None


@scorer("mvbench_lmms")
def _mvbench_score(pred: str | None, target: str) -> dict[str, float]:
    if pred is None:
        return {"accuracy": 0.0, "unanswered": 1.0}
    return {"accuracy": float(pred == mvbench_normalize(str(target)))}


@dataclass(frozen=True)
class AnsweredMean(Metric):
    """100 * mean of `key` over the samples its scorer did not mark `unanswered` (failed samples count 0); 0 when
    every sample is unanswered. Only the headline scorer marks them, so the `_flexible` reading (the same
    aggregation on `<key>_flexible`, whose marker would be `unanswered_flexible`) counts an empty reply as wrong."""

    def aggregate(self, per_sample: Iterable[dict[str, float] | None]) -> float | None:
        per = list(per_sample)
        if not per:
            return None
        marker = "unanswered_flexible" if self.key.endswith("_flexible") else "unanswered"
        vals = [self.sample_value(s) for s in per if not (s or {}).get(marker)]
        return 100.0 * sum(vals) / len(vals) if vals else 0.0


# ---------------------------------------------------------------- LongVideoBench

_LVB_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                 "The best option is", "The correct option is", "Best answer:", "Best option:")


@register("lvb_lmms", version=1, strip=False)
def _lvb(text: str, sample: Any) -> dict[str, Any]:
    """{"choice": letter, "random_fallback": bool}: the first A-E after the prefixes are removed, else a seeded
    guess among the sample's option letters."""
    s = text.strip()
    for prefix in _LVB_PREFIXES:
        s = s.replace(prefix, "")
    m = re.search(r"[ABCDE]", s)
    if m:
        return {"choice": m.group(0), "random_fallback": False}
    n = len(getattr(sample, "choices", None) or []) or 4
    return {"choice": seeded_guess(LETTERS[:n], str(sample.id)), "random_fallback": True}


# ---------------------------------------------------------------- MLVU, LVBench

@scorer("accuracy_exact")
def _accuracy_exact(pred: str | None, target: Any) -> dict[str, float]:
    """lmms-eval lvbench / mlvu: the extracted letter equals the stored answer exactly."""
    answer = target["answer"] if isinstance(target, dict) else target
    return {"accuracy": float(pred is not None and pred == answer)}


@scorer("accuracy_exact_by_type")
def _accuracy_by_type(pred: str | None, target: dict) -> dict[str, float]:
    """`accuracy_exact`, with the sample's task type marked for `MacroMean` (`task_type=<type>`: 1)."""
    return {**_accuracy_exact(pred, target), f"{GROUP}{target['task_type']}": 1.0}


@dataclass(frozen=True)
class MacroMean(Metric):
    """100 * the mean over groups (each sample's `task_type=<g>` marker) of the per-group mean of `key`; failed
    samples without scores count in no group."""

    def aggregate(self, per_sample: Iterable[dict[str, float] | None]) -> float | None:
        groups: dict[str, list[float]] = {}
        for s in per_sample:
            for k in s or {}:
                if k.startswith(GROUP):
                    groups.setdefault(k[len(GROUP):].removesuffix("_flexible"), []).append(self.sample_value(s))
        if not groups:
            return None
        return 100.0 * sum(sum(v) / len(v) for v in groups.values()) / len(groups)


METRICS["mvbench_accuracy"] = AnsweredMean("mvbench_accuracy", "accuracy")
METRICS["m_avg"] = MacroMean("m_avg", "accuracy")
