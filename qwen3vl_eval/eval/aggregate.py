"""Aggregation of a task's sample records into its metrics, by one denominator rule (`DENOMINATOR_RULE`: every
metric is over all samples, a failed one counts 0 and as a parse failure), and the one table of metric directions
(results.json `higher_is_better`, compare's gates and wording)."""

from __future__ import annotations

from typing import Any

from qwen3vl_eval.eval.metrics import FLEXIBLE, Metric, get_metric

PARSE_FAILURE_RATE = "parse_failure_rate"
# Metrics where a lower value is better; every other metric (all of METRICS) is higher-is-better. The one table
# of directions: results.json `higher_is_better`, compare's gates and its "rose"/"fell" wording read it.
LOWER_IS_BETTER = frozenset({PARSE_FAILURE_RATE, PARSE_FAILURE_RATE + FLEXIBLE})
# The one denominator rule, recorded in results.json `scoring`.
DENOMINATOR_RULE = ("every metric is over all n_samples; a sample that errored (n_errors) or has no prediction "
                    "(n_missing, score --missing wrong) counts as 0 in every score metric and as a parse failure "
                    "in parse_failure_rate (except a reference rule listed under scoring.exceptions)")


def higher_is_better(name: str, recorded: bool | None = None) -> bool:
    """The direction of a metric: False for the parse-failure rates, else the metric's own (True); for a metric
    this table does not know, `recorded` (what a results.json says) or else True."""
    if name in LOWER_IS_BETTER:
        return False
    try:
        return get_metric(name).higher_is_better
    except KeyError:
        return True if recorded is None else recorded


def record_value(name: str, rec: dict) -> float | None:
    """The per-sample value (0..1) of metric `name` in one samples.jsonl record, by the denominator rule: a
    failed record (`error` set) is 0, or 1 for a parse-failure rate. None when the record carries no value for
    it (a metric this table does not know, or a score key the record lacks)."""
    failed = bool(rec.get("error"))
    if name in LOWER_IS_BETTER:  # parse_failure_rate[_flexible] <- parsed[_flexible]
        key = "parsed" + name.removeprefix(PARSE_FAILURE_RATE)
        if failed:
            return 1.0
        return None if key not in rec else 0.0 if rec[key] else 1.0
    try:
        metric = get_metric(name)
    except KeyError:
        return None
    if failed:
        return 0.0
    scores = rec.get("scores") if isinstance(rec.get("scores"), dict) else None
    if scores is None or metric.key not in scores:
        return None
    return metric.sample_value(scores)


def exceptions(metric_names: list[str]) -> dict[str, str]:
    """Metrics whose reference rule aggregates otherwise than `DENOMINATOR_RULE` (a `Metric` subclass, e.g.
    MVBench's mean over answered samples, MLVU's macro mean), each with the first line of its rule."""
    out = {}
    for m in metric_names:
        try:
            metric = get_metric(m)
        except KeyError:  # the parse-failure rates, and metrics of other harnesses
            continue
        if type(metric) is not Metric:
            doc = " ".join((type(metric).__doc__ or type(metric).__name__).split())
            out[m] = doc.split(". ")[0].rstrip(".")  # its first sentence
    return out


def summarize(metric_names: list[str], records: list[dict], group_by: list[str] | None = None) -> dict[str, Any]:
    """Metrics (percent) over all sample records by `DENOMINATOR_RULE` (a failed one counts 0, and as a parse
    failure), the same metrics per value of each `group_by` meta field, and the counts: errors, missing
    predictions, parse failures of replies, Thinking replies cut before `</think>`, MMMU's seeded letter
    guesses."""
    rates = [PARSE_FAILURE_RATE] + ([PARSE_FAILURE_RATE + FLEXIBLE] if any(m.endswith(FLEXIBLE)
                                                                           for m in metric_names) else [])

    def block(recs: list[dict]) -> dict[str, float | None]:
        # a failed sample: None, counted 0; group metrics (`eval.group_metrics`) also read the records' meta
        out: dict[str, float | None] = {m: get_metric(m).aggregate_records(recs) for m in metric_names}
        for m in rates:
            vals = [record_value(m, r) for r in recs]
            vals = [0.0 if v is None else v for v in vals]
            out[m] = 100.0 * sum(vals) / len(vals) if vals else None
        return out

    breakdowns: dict[str, dict[str, dict]] = {}
    for fld in group_by or []:
        groups: dict[str, list[dict]] = {}
        for r in records:
            groups.setdefault(str((r.get("meta") or {}).get(fld)), []).append(r)
        breakdowns[fld] = {k: {**block(v), "n": len(v)} for k, v in sorted(groups.items())}
    return {
        "metrics": block(records),
        "n_samples": len(records),
        "n_errors": sum(bool(r.get("error")) and not r.get("missing") for r in records),
        "n_missing": sum(bool(r.get("missing")) for r in records),
        "n_parse_failures": sum(not r.get("error") and not r.get("parsed") for r in records),
        "n_truncated_reasoning": sum(bool(r.get("truncated_reasoning")) for r in records),
        "n_random_fallback": sum(bool((r.get("scores") or {}).get("random_fallback")) for r in records),
        "breakdowns": breakdowns,
    }
