"""Metrics over groups of samples, recomputed from the sample records (their per-sample scores and `meta`), so
`score` on a samples.jsonl gives them again. Registered in `metrics.METRICS` beside the per-sample means.

- `all` (MMBench CircularEval, HallusionBench fAcc / qAcc; its aAcc is the plain mean): a group counts 1
  when every sample in it is right; the metric is 100 x the fraction of groups that count.
- `macro` (MMStar's lmms-eval "average"): 100 x the mean over groups of each group's mean.
- `sum` (OCRBench's score): the number of right samples (out of 1000 on the full benchmark).

Samples without the group field form one group each; a failed sample (error) counts 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwen3vl_eval.eval.metrics import METRICS, Metric


@dataclass(frozen=True)
class GroupMetric(Metric):
    """`reduce` (all, macro, sum) of the per-sample value `key` over groups of records sharing `meta[group]`."""

    group: str = ""
    reduce: str = "all"

    def group_values(self, records: list[dict]) -> dict[str, float]:
        """Each group's value (all: 1 or 0; macro: its mean), keyed by the id of its first sample, so that
        `compare` pairs groups as it pairs samples. Not defined for `sum`."""
        groups: dict[str, tuple[str, list[float]]] = {}
        for i, r in enumerate(records):
            g = (r.get("meta") or {}).get(self.group)
            v = 0.0 if r.get("error") else self.sample_value(r.get("scores"))
            groups.setdefault(f"#{i}" if g is None else str(g), (str(r.get("id", i)), []))[1].append(v)
        agg = (lambda vs: float(all(v >= 1.0 for v in vs))) if self.reduce == "all" else \
            (lambda vs: sum(vs) / len(vs))
        return {first: agg(vs) for first, vs in groups.values()}

    def aggregate_records(self, records: list[dict]) -> float | None:
        if not records:
            return None
        if self.reduce == "sum":
            return float(sum(0.0 if r.get("error") else self.sample_value(r.get("scores")) for r in records))
        per = list(self.group_values(records).values())
        return 100.0 * sum(per) / len(per)


METRICS.update({m.name: m for m in [
    GroupMetric("circular_accuracy", "accuracy", group="circular_group", reduce="all"),
    GroupMetric("accuracy_l2_macro", "accuracy", group="l2_category", reduce="macro"),
    Metric("aAcc", "accuracy"),
    GroupMetric("fAcc", "accuracy", group="figure_group", reduce="all"),
    GroupMetric("qAcc", "accuracy", group="question_group", reduce="all"),
    GroupMetric("ocrbench_score", "accuracy", reduce="sum"),
]})
