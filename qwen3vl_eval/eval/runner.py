"""The evaluation loop: samples -> conversations -> backend.chat -> parse -> score -> samples.jsonl, then
results.json and report.md (CONTRACTS section 5).

Crash safety: each finished batch is appended to `samples.jsonl` and fsync'd, so a crash loses at most the batch
in flight. `resume=True` drops a torn last line and skips ids already logged. A sample that fails (missing or
corrupt media, a prompt the backend rejects) is logged with its error, counts as 0 and in `n_errors`, and the
run goes on; a batch that raises is retried one sample at a time to find the culprit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.data import Sample, open_image
from qwen3vl_eval.eval.metrics import SCORERS, summarize
from qwen3vl_eval.eval.parsers import PARSERS, strip_reasoning
from qwen3vl_eval.eval.prompts import PROMPTS, build_messages
from qwen3vl_eval.eval.reports import write_outputs
from qwen3vl_eval.eval.task import TaskSpec

TIMING_KEYS = ("preprocess", "vision", "prefill", "decode")


class Backend(Protocol):
    """What the runner needs from a model: `qwen3vl_eval.engine.Engine` satisfies it."""

    timings: dict[str, float]
    info: dict[str, Any]

    def chat(self, conversations: list[list[dict]], params: Any) -> list[Any]:
        """One reply (with .text, .token_ids, .finish_reason) per conversation."""
        ...


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- one sample

def score_sample(spec: TaskSpec, sample: Sample, prediction: str | None, error: str | None = None,
                 extra: dict | None = None) -> dict:
    """The samples.jsonl record of one sample: raw prediction, reasoning (stripped before scoring), extracted
    answer, target, per-sample scores, error."""
    rec: dict[str, Any] = {"id": sample.id, "prediction": prediction}
    if error is not None or prediction is None:
        rec.update(extracted=None, parsed=False, target=sample.target, scores=None,
                   error=error or "no prediction")
    else:
        reasoning, answer = strip_reasoning(prediction)
        extracted = PARSERS[spec.parser](answer, sample)
        scores = SCORERS[spec.scorer](extracted, sample.target)
        rec.update(answer=answer, extracted=extracted, parsed=extracted is not None, target=sample.target,
                   scores=scores, error=None)
        if reasoning is not None:
            rec["reasoning"] = reasoning
    if sample.meta:
        rec["meta"] = sample.meta
    if extra:
        rec.update(extra)
    return rec


def conversation(spec: TaskSpec, sample: Sample) -> list[dict]:
    """The chat messages of a sample; raises on missing or corrupt media."""
    if sample.error:
        raise TaskError(sample.error)
    images = [open_image(ref).convert("RGB") for ref in sample.images]
    return build_messages(PROMPTS[spec.prompt], sample, images, spec.media)


def generation_kwargs(spec: TaskSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """The task's `generation:` settings with command-line values (those not None) on top."""
    out = dict(spec.generation)
    out.update({k: v for k, v in overrides.items() if v is not None})
    return out


# ---------------------------------------------------------------- samples.jsonl

def read_records(path: Path, repair: bool = False) -> list[dict]:
    """Records of a samples.jsonl. A torn last line (a crash mid-write) is ignored, and cut off when `repair`;
    a bad complete line is an error naming the line."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    records = []
    for i, line in enumerate(data[:end].split(b"\n")[:-1], 1):
        if line.strip():
            rec = _record(line)
            if rec is None:
                raise TaskError(f"{path}:{i}: bad record (not a JSON object with an id)")
            records.append(rec)
    tail = data[end:]
    if tail.strip():
        rec = _record(tail)
        if rec is not None:  # complete but for its newline
            records.append(rec)
            if repair:
                with open(path, "ab") as f:
                    f.write(b"\n")
        elif repair:
            with open(path, "r+b") as f:
                f.truncate(end)
    return records


def _record(line: bytes) -> dict | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and "id" in rec else None


def backend_timings(backend: Any) -> dict[str, float]:
    """Cumulative phase seconds of a backend, as `{preprocess, vision, prefill, decode, generated_tokens}`,
    from a dict or an object with `as_dict()` (keys with or without an `_s` suffix)."""
    t = getattr(backend, "timings", None)
    if t is None:
        return {}
    raw = t.as_dict() if hasattr(t, "as_dict") else dict(t)
    return {k.removesuffix("_s"): float(v) for k, v in raw.items() if isinstance(v, (int, float))}


def _append(f: Any, records: list[dict]) -> None:
    for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _as_dict(params: Any) -> dict:
    if dataclasses.is_dataclass(params):
        return dataclasses.asdict(params)
    return dict(params) if isinstance(params, dict) else dict(vars(params))


# ---------------------------------------------------------------- a task

def run_task(spec: TaskSpec, samples: list[Sample], backend: Backend, out_dir: Path, params: Any, *,
             batch_size: int = 1, resume: bool = False, config: dict | None = None,
             on_progress: Callable[[int, int], None] | None = None, data_source: str = "") -> dict:
    """Generate, parse and score every sample not already in `out_dir/samples.jsonl`; write the results."""
    if batch_size < 1:
        raise TaskError(f"--batch-size {batch_size}: must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "samples.jsonl"
    if log.exists() and not resume:
        raise TaskError(f"{log}: already exists; pass --resume to continue that run or choose another --output")
    done = {r["id"] for r in read_records(log, repair=True)}
    todo = [s for s in samples if s.id not in done]
    n_errors = 0
    started, t0 = now(), time.perf_counter()
    timings0 = backend_timings(backend)
    tokens = 0  # counted from the replies, so a backend without a token counter still reports a rate
    with open(log, "a", encoding="utf-8") as f:
        for b in range(0, len(todo), batch_size):
            batch = todo[b : b + batch_size]
            records = _run_batch(spec, batch, backend, params)
            tokens += sum(r.get("generated_tokens", 0) for r in records)
            n_errors += sum(bool(r["error"]) for r in records)
            _append(f, records)
            if on_progress:
                on_progress(len(batch), n_errors)
    wall = time.perf_counter() - t0
    timings1 = backend_timings(backend)
    throughput = {
        "samples": len(todo), "wall_s": round(wall, 3),
        "samples_per_s": round(len(todo) / wall, 4) if wall > 0 and todo else None,
        "generated_tokens": tokens,
        "generated_tokens_per_s": round(tokens / wall, 2) if wall > 0 and todo else None,
        "time_s": {k: round(timings1.get(k, 0.0) - timings0.get(k, 0.0), 4) for k in TIMING_KEYS},
        "resumed_from": len(done),
    }
    extra = {"model_info": dict(getattr(backend, "info", {}) or {}), "throughput": throughput,
             "started": started, "finished": now(), "data_source": data_source}
    cfg = {**(config or {}), "batch_size": batch_size, "generation": _as_dict(params)}
    return finish(spec, samples, read_records(log), out_dir, cfg, extra)


def _run_batch(spec: TaskSpec, batch: list[Sample], backend: Backend, params: Any) -> list[dict]:
    convs: list[tuple[Sample, list[dict]]] = []
    records: dict[str, dict] = {}
    for s in batch:
        try:
            convs.append((s, conversation(spec, s)))
        except Exception as e:  # missing/corrupt media: log it, go on
            records[s.id] = score_sample(spec, s, None, f"{type(e).__name__}: {e}")
    groups = [convs] if len(convs) > 0 else []
    while groups:
        group = groups.pop(0)
        try:
            replies = backend.chat([c for _, c in group], params)
            if len(replies) != len(group):
                raise RuntimeError(f"backend returned {len(replies)} replies for {len(group)} conversations")
        except Exception as e:
            if len(group) > 1:
                groups = [[g] for g in group] + groups
                continue
            s = group[0][0]
            records[s.id] = score_sample(spec, s, None, f"{type(e).__name__}: {e}")
            continue
        for (s, _), reply in zip(group, replies):
            extra = {"finish_reason": getattr(reply, "finish_reason", None),
                     "generated_tokens": len(getattr(reply, "token_ids", None) or [])}
            records[s.id] = score_sample(spec, s, reply.text, extra=extra)
    return [records[s.id] for s in batch]


# ---------------------------------------------------------------- results

def finish(spec: TaskSpec, samples: list[Sample], records: list[dict], out_dir: Path, config: dict,
           extra: dict) -> dict:
    """Aggregate the records of `samples` (last record per id, dataset order) into results.json and report.md."""
    by_id = {r["id"]: r for r in records}
    ordered = [by_id[s.id] for s in samples if s.id in by_id]
    summary = summarize(spec.metrics, ordered, spec.group_by)
    results = {
        "task": spec.task,
        "model": config.get("model"),
        **summary,
        "primary_metric": spec.primary_metric,
        "higher_is_better": {m: True for m in spec.metrics} | {"parse_failure_rate": False},
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
    if spec.data.source == "synth":
        from qwen3vl_eval.eval.synth import VERSION

        out["synth"] = VERSION
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def read_predictions(path: Path) -> dict[str, dict]:
    """`{"id": ..., "prediction": "..."}` lines (a run's samples.jsonl works too) -> records by id."""
    if not path.is_file():
        raise TaskError(f"--predictions {path}: no such file")
    out: dict[str, dict] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise TaskError(f"{path}:{i}: not valid JSON: {e}") from None
        if not isinstance(rec, dict) or "id" not in rec:
            raise TaskError(f"{path}:{i}: field id missing")
        if "prediction" not in rec:
            raise TaskError(f"{path}:{i}: field prediction missing")
        pred = rec["prediction"]
        if pred is None and not rec.get("error"):
            raise TaskError(f"{path}:{i}: field prediction is null without an error")
        if pred is not None and not isinstance(pred, str):
            raise TaskError(f"{path}:{i}: field prediction must be a string")
        sid = str(rec["id"])
        if sid in out:
            raise TaskError(f"{path}:{i}: duplicate id {sid!r}")
        out[sid] = rec
    return out


def score_predictions(spec: TaskSpec, samples: list[Sample], predictions: Path, out_dir: Path,
                      config: dict | None = None, data_source: str = "") -> dict:
    """Score a predictions file against a task's samples without a model; same outputs as `run_task`."""
    preds = read_predictions(predictions)
    known = {s.id for s in samples}
    unknown = [k for k in preds if k not in known]
    if unknown:
        raise TaskError(f"{predictions}: field id: {len(unknown)} id(s) not in task {spec.task}, "
                        f"e.g. {unknown[0]!r}")
    records = []
    for s in samples:
        p = preds.get(s.id)
        if p is not None:
            records.append(score_sample(spec, s, p["prediction"], p.get("error") if p["prediction"] is None
                                        else None))
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "samples.jsonl", "w", encoding="utf-8") as f:
        _append(f, records)
    cfg = {"model": None, "predictions": str(predictions), **(config or {})}
    extra = {"n_missing": len(samples) - len(records), "data_source": data_source}
    return finish(spec, samples, records, out_dir, cfg, extra)
