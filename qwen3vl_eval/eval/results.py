"""Scoring and results: a sample's record (parse, score), then per task `results.json` (metrics, throughput,
versions, provenance) and `report.md` (CONTRACTS section 5). `score_predictions` does the same for saved
predictions, without a model."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval import (  # noqa: F401  (register the headline rules, the issue #16 image tasks)
    adapters_image,
    group_metrics,
    parsers_image,
    reference_lm_eval,
    reference_lmms,
)
from qwen3vl_eval.eval.adapters import Sample
from qwen3vl_eval.eval.aggregate import DENOMINATOR_RULE, exceptions, higher_is_better, summarize
from qwen3vl_eval.eval.judge import apply_judge
from qwen3vl_eval.eval.judge_prompts import JUDGE_PROMPTS
from qwen3vl_eval.eval.metrics import SCORERS
from qwen3vl_eval.eval.parsers import PARSERS
from qwen3vl_eval.eval.prompts import PROMPTS, build_messages
from qwen3vl_eval.eval.reports import write_outputs
from qwen3vl_eval.eval.sample_log import prompt_fields, read_predictions, write_records
from qwen3vl_eval.eval.task import TaskSpec
from qwen3vl_eval.processor.chat import split_reasoning
from qwen3vl_eval.report.files import read_json
from qwen3vl_eval.runtime.timing import PHASES

TIMING_KEYS = PHASES


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- one sample

def score_sample(spec: TaskSpec, sample: Sample, prediction: str | None, error: str | None = None,
                 extra: dict | None = None, *, split: tuple[str | None, str] | None = None,
                 thinking: bool = False) -> dict:
    """The samples.jsonl record of one sample (fields documented in the README, "samples.jsonl"): the prompt
    as text (media as placeholders), the raw `prediction`, its `reasoning` (left out of scoring), its
    `prediction_answer`, the `parsed_prediction`, the gold `target`, per-sample scores (headline, then
    `<key>_flexible` from the task's flexible reading), `error`.
    `split` is the reply's (reasoning, answer) when the backend gave them (`Reply.reasoning`, `Reply.answer`);
    else the prediction is split here (`split_reasoning`). The answer after `</think>` is stripped (lmms-eval's
    Qwen3-VL reading); without `</think>` the reply is scored as generated (the reference scorers see the raw
    text). A reply cut off before `</think>` (a Thinking checkpoint's, `thinking=True`, or one that opened
    `<think>`) has no answer: a parse failure of both readings, counted as `truncated_reasoning`."""
    rec: dict[str, Any] = {"id": sample.id, **prompt_fields(build_messages(PROMPTS[spec.prompt], sample,
                                                                             sample.images, spec.media)),
                           "prediction": prediction}
    if error is not None or prediction is None:
        rec.update(parsed_prediction=None, parsed=False, target=sample.target, scores=None,
                   error=error or "no prediction")
    else:
        reasoning, answer = split if split is not None else split_reasoning(prediction)
        if reasoning is None and (thinking or "<think>" in prediction):
            reasoning, answer = prediction.replace("<think>", "", 1).strip(), None
        elif reasoning is not None:
            answer = answer.strip()
        parsed = None if answer is None else PARSERS[spec.parser](answer, sample)
        scores = SCORERS[spec.scorer](parsed, sample.target)
        rec.update(prediction_answer=answer, parsed_prediction=parsed, parsed=parsed is not None,
                   target=sample.target)
        if spec.flexible:
            flex = None if answer is None else PARSERS[spec.flexible["parser"]](answer, sample)
            scores |= {f"{k}_flexible": v for k, v in SCORERS[spec.flexible["scorer"]](flex, sample.target).items()}
            rec.update(parsed_prediction_flexible=flex, parsed_flexible=flex is not None)
        rec.update(scores=scores, error=None)
        # CONTRACTS section 5: the per-sample scores are fields of the line; `scores` groups them as well
        rec.update({k: v for k, v in scores.items() if k not in rec})
        if reasoning is not None:
            rec["reasoning"] = reasoning
        if answer is None:
            rec["truncated_reasoning"] = True
    if sample.meta:
        rec["meta"] = sample.meta
    if extra:
        rec.update(extra)
    return rec


# ---------------------------------------------------------------- throughput

def request_latencies(backend: Any, start: int) -> list[float]:
    """Seconds of each successful request a server backend (`backend.requests`) made since index `start`."""
    requests = getattr(backend, "requests", None) or []
    return [float(r.latency_s) for r in requests[start:] if getattr(r, "error", None) is None]


def latency_summary(latencies: list[float]) -> dict[str, Any]:
    """n, mean, p50, p90, max of request latencies in seconds (sorted input)."""
    if not latencies:
        return {"n": 0}
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 4)  # noqa: E731
    return {"n": len(latencies), "mean_s": round(sum(latencies) / len(latencies), 4), "p50_s": pick(0.5),
            "p90_s": pick(0.9), "max_s": round(latencies[-1], 4)}


def throughput(per_rank: list[dict], *, resumed_from: int, with_requests: bool) -> dict[str, Any]:
    """results.json `throughput` from each rank's counters (`samples`, `wall_s`, `tokens`, `oom_splits`,
    `timeouts`, `effective_batch_size`, `time_s`, `request_latency_s`): wall time is the slowest rank's."""
    n = sum(r["samples"] for r in per_rank)
    wall = max(r["wall_s"] for r in per_rank)
    tokens = sum(r["tokens"] for r in per_rank)
    out: dict[str, Any] = {
        "samples": n, "wall_s": round(wall, 3),
        "samples_per_s": round(n / wall, 4) if wall > 0 and n else None,
        "generated_tokens": tokens,
        "generated_tokens_per_s": round(tokens / wall, 2) if wall > 0 and n else None,
        "time_s": {k: round(sum(r["time_s"][k] for r in per_rank), 4) for k in TIMING_KEYS},
        "resumed_from": resumed_from,
        "ranks": len(per_rank),
        "oom_splits": sum(r["oom_splits"] for r in per_rank),
        "effective_batch_size": min(r["effective_batch_size"] for r in per_rank),
        "timeouts": sum(r["timeouts"] for r in per_rank),
    }
    latencies = sorted(x for r in per_rank for x in r["request_latency_s"])
    if latencies or with_requests:
        out["requests"] = latency_summary(latencies)
    return out


def earlier_throughput(out_dir: Path, tp: dict[str, Any]) -> dict[str, Any]:
    """`tp`, or, when this (resumed) run generated nothing, the figures of the run that did, from the
    results.json already in `out_dir`, marked `from_earlier_run` (that run's date) with this run's
    `resumed_from`."""
    if tp["samples"]:
        return tp
    old = read_json(out_dir / "results.json", default=None)
    prev = old.get("throughput") if isinstance(old, dict) else None
    if not isinstance(prev, dict) or not prev.get("samples"):
        return {**tp, "note": "no figures: every sample was generated by an earlier run that wrote no results"}
    when = prev.get("from_earlier_run") or old.get("finished") or old.get("created")
    return {**prev, "resumed_from": tp["resumed_from"], "from_earlier_run": when,
            "note": f"nothing left to generate; figures from the earlier run ({when})"}


# ---------------------------------------------------------------- results

def finish(spec: TaskSpec, samples: list[Sample], records: list[dict], out_dir: Path, config: dict,
           extra: dict, judge: Any = None) -> dict:
    """Aggregate the records of `samples` (last record per id, dataset order) into results.json and report.md;
    a task with a `judge:` block is judged first (`eval.judge.apply_judge`, with `judge` when one is configured)
    and samples.jsonl rewritten with the per-sample judge records."""
    by_id = {r["id"]: r for r in records}
    ordered = [by_id[s.id] for s in samples if s.id in by_id]
    judged, judge_block = apply_judge(spec, samples, ordered, judge)
    if judge_block is not None:
        write_records(out_dir / "samples.jsonl", records)
        extra = {**extra, "judge": judge_block}
    summary = summarize(spec.all_metrics + judged, ordered, spec.group_by)
    results = {
        "task": spec.task,
        "model": config.get("model"),
        **summary,
        "primary_metric": spec.primary_metric,
        "reference": spec.reference or None,
        "higher_is_better": {m: higher_is_better(m) for m in summary["metrics"]},
        "scoring": {"denominator": "n_samples", "rule": DENOMINATOR_RULE,
                    "exceptions": exceptions(list(summary["metrics"]))},
        "config": config,
        "throughput": extra.pop("throughput", None),
        "versions": versions(spec),
        "created": now(),
        **extra,
    }
    write_outputs(out_dir, results, ordered, spec)
    return results


def versions(spec: TaskSpec) -> dict[str, Any]:
    """Versions of everything that decides a number: task, prompt (+ hash), parser, harness, libraries."""
    import qwen3vl_eval

    prompt, parser = PROMPTS[spec.prompt], PARSERS[spec.parser]
    out: dict[str, Any] = {
        "task": spec.version, "prompt": f"{prompt.name}@{prompt.version}", "prompt_hash": prompt.hash,
        "parser": f"{parser.name}@{parser.version}", "scorer": spec.scorer,
        "harness": getattr(qwen3vl_eval, "__version__", None), "python": platform.python_version(),
    }
    if spec.flexible:
        flex = PARSERS[spec.flexible["parser"]]
        out.update(parser_flexible=f"{flex.name}@{flex.version}", scorer_flexible=spec.flexible["scorer"])
    if spec.judge:
        out["judge_prompt"] = JUDGE_PROMPTS[spec.judge.prompt].id
    if spec.data.source == "synth":
        from qwen3vl_eval.eval.synth import VERSION

        out["synth"] = VERSION
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


MISSING_POLICIES = ("wrong", "skip")
N_MISSING_IDS = 5  # missing ids named in results.json, report.md and on the console


def score_predictions(spec: TaskSpec, samples: list[Sample], predictions: Path, out_dir: Path,
                      config: dict | None = None, data_source: str = "", judge: Any = None,
                      missing: str = "wrong") -> dict:
    """Score a predictions file against a task's samples without a model (judged by `judge` when the task has a
    `judge:` block and one is given); same outputs as `run_task`.
    A task sample with no prediction is, with `missing="wrong"`, logged as failed (`missing: true`) and counts
    0 in every metric; with `"skip"` it is left out and the metrics cover only the predicted samples. Either
    way results.json `missing` names how many and the first few ids."""
    if missing not in MISSING_POLICIES:
        raise TaskError(f"--missing {missing}: expected one of {', '.join(MISSING_POLICIES)}")
    preds = read_predictions(predictions)
    known = {s.id for s in samples}
    unknown = [k for k in preds if k not in known]
    if unknown:
        raise TaskError(f"{predictions}: field id: {len(unknown)} id(s) not in task {spec.task}, "
                        f"e.g. {unknown[0]!r}")
    records, absent = [], []
    for s in samples:
        p = preds.get(s.id)
        if p is not None and p.get("missing"):  # a missing record of an earlier `score` is missing again
            p = None
        if p is not None:
            records.append(score_sample(spec, s, p["prediction"], p.get("error") if p["prediction"] is None
                                        else None))
        else:
            absent.append(s.id)
            if missing == "wrong":
                records.append(score_sample(spec, s, None, f"missing: no prediction in {predictions}",
                                            extra={"missing": True}))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_records(out_dir / "samples.jsonl", records)
    cfg = {"model": None, "predictions": str(predictions), "missing": missing, **(config or {})}
    extra: dict[str, Any] = {"n_missing": len(absent), "data_source": data_source}
    if absent:
        extra["missing"] = {"n": len(absent), "of": len(samples), "policy": missing,
                            "first_ids": absent[:N_MISSING_IDS], "note": missing_note(len(absent), len(samples),
                                                                                      missing)}
    return finish(spec, samples, records, out_dir, cfg, extra, judge)


def missing_note(n: int, of: int, policy: str) -> str:
    """The one sentence that says what missing predictions did to the numbers."""
    if policy == "skip":
        return (f"{n} of {of} task samples have no prediction and are LEFT OUT (--missing skip): the metrics "
                f"cover {of - n} samples, not the whole task")
    return f"{n} of {of} task samples have no prediction and count as wrong (--missing wrong)"
