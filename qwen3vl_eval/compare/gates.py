"""Regression gates: thresholds on metric drops (global and per task/metric, with wildcards) and on speed."""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field

from qwen3vl_eval.compare.results import Result
from qwen3vl_eval.errors import InputError

# Throughput keys that are "higher is better" rates, gated by --min-speed-ratio.
SPEED_KEYS = ("samples_per_s", "generated_tokens_per_s", "prefill_tokens_per_s", "decode_tokens_per_s")
_OVERRIDE = re.compile(r"^(?P<task>[^:=]+):(?P<metric>[^=]+)=(?P<value>.+)$")


@dataclass
class Gate:
    """Regression thresholds. `max_drop_metric` maps (task pattern, metric pattern) to points; patterns are
    exact names or fnmatch wildcards (`*`). The most specific match wins: exact pair, then an exact task or
    metric, then wildcards, then `max_drop`."""

    max_drop: float | None = None
    max_drop_metric: dict[tuple[str, str], float] = field(default_factory=dict)
    min_speed_ratio: float | None = None
    require_significant: bool = False

    @property
    def active(self) -> bool:
        return self.max_drop is not None or bool(self.max_drop_metric) or self.min_speed_ratio is not None

    def threshold(self, task: str, metric: str) -> float | None:
        best: tuple[int, float] | None = None
        for (tp, mp), v in self.max_drop_metric.items():
            if fnmatch.fnmatchcase(task, tp) and fnmatch.fnmatchcase(metric, mp):
                rank = (tp == task) * 2 + (mp == metric)
                if best is None or rank > best[0]:
                    best = (rank, v)
        return best[1] if best is not None else self.max_drop


def parse_metric_overrides(items: list[str]) -> dict[tuple[str, str], float]:
    """`TASK:METRIC=POINTS` strings (TASK or METRIC may be `*`) to a dict; bad syntax is an InputError."""
    out: dict[tuple[str, str], float] = {}
    for item in items:
        m = _OVERRIDE.match(item.strip())
        if not m:
            raise InputError(f"--max-drop-metric {item!r}: expected TASK:METRIC=POINTS (e.g. videomme:accuracy=1.0)")
        try:
            value = float(m["value"])
        except ValueError:
            raise InputError(f"--max-drop-metric {item!r}: {m['value']!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise InputError(f"--max-drop-metric {item!r}: points must be a finite number >= 0")
        out[(m["task"].strip(), m["metric"].strip())] = value
    return out


def check_overrides(gate: Gate, baseline: Result) -> None:
    """Every per-metric override must name at least one metric of the baseline (a typo would disable a gate)."""
    pairs = [(t, m) for t, tr in baseline.tasks.items() for m in tr.metrics]
    for tp, mp in gate.max_drop_metric:
        if not any(fnmatch.fnmatchcase(t, tp) and fnmatch.fnmatchcase(m, mp) for t, m in pairs):
            known = ", ".join(f"{t}:{m}" for t, m in pairs) or "none"
            raise InputError(f"--max-drop-metric {tp}:{mp}: matches no metric of the baseline (known: {known})")


def gate_summary(gate: Gate) -> str:
    if not gate.active:
        return "none"
    parts = []
    if gate.max_drop is not None:
        parts.append(f"max drop {gate.max_drop:g} points for every metric")
    parts += [f"max drop {v:g} for {t}:{m}" for (t, m), v in gate.max_drop_metric.items()]
    if gate.require_significant:
        parts.append("a drop fails only when its paired CI excludes 0")
    if gate.min_speed_ratio is not None:
        parts.append(f"min speed ratio {gate.min_speed_ratio:g} on {', '.join(SPEED_KEYS)}")
    parts.append("missing tasks, metrics, throughput figures and bench rows, and task-version mismatches fail")
    return "; ".join(parts)
