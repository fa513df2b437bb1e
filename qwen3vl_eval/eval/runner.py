"""The evaluation loop: samples -> conversations -> backend.chat -> parse -> score -> samples.jsonl, then
results.json and report.md (CONTRACTS section 5).

Crash safety: each finished batch is appended to `samples.jsonl`, flushed and fsync'd, so a crash (even
SIGKILL) loses at most the batch in flight. `resume=True` drops a torn last line and skips ids already logged.
A sample that fails (missing or corrupt media, a prompt the backend rejects) is logged with its error, counts
as 0 and in `n_errors`, and the run goes on; a batch that raises is retried one sample at a time to find the
culprit.

Resources: an out-of-memory error (`torch.OutOfMemoryError`, a RuntimeError saying "out of memory", or
`BatchOutOfMemory`) halves the batch and retries; later batches keep the smaller size, and results.json
records the splits (`throughput.oom_splits`, `throughput.effective_batch_size`). `sample_timeout` marks every
sample of a batch whose generation takes longer as an error (see `Generator`).

Data parallel (`qwen3vl_eval.eval.distributed`): each rank generates a round-robin shard of the samples still to do
and appends to its own `samples.rank{r}.jsonl`; after a barrier rank 0 merges every log into `samples.jsonl`
(dataset order, one record per id), deletes the rank logs and scores. A resume, with any number of ranks,
first merges whatever logs an interrupted run left.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import platform
import re
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import PIL.Image

from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.data import Sample, open_image
from qwen3vl_eval.eval.distributed import SINGLE, Dist
from qwen3vl_eval.eval.metrics import SCORERS, summarize
from qwen3vl_eval.eval.parsers import PARSERS, strip_reasoning
from qwen3vl_eval.eval.prompts import PROMPTS, build_messages
from qwen3vl_eval.eval.reports import write_outputs
from qwen3vl_eval.eval.task import TaskSpec
from qwen3vl_eval.processor.image import max_image_pixels

TIMING_KEYS = ("preprocess", "vision", "prefill", "decode")
log = logging.getLogger(__name__)


class BatchOutOfMemory(Exception):
    """Raised by a backend (or a test double) when a batch does not fit in memory: the runner splits it."""


class SampleTimeout(Exception):
    """A batch's generation ran past `--sample-timeout`."""


class Backend(Protocol):
    """What the runner needs from a model: `qwen3vl_eval.backends.native.Engine` satisfies it."""

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
        # CONTRACTS section 5: the per-sample scores are fields of the line; `scores` groups them as well
        rec.update({k: v for k, v in scores.items() if k not in rec})
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
    images = [_checked_image(ref, sample.media_roots) for ref in sample.images]
    return build_messages(PROMPTS[spec.prompt], sample, images, spec.media)


def _checked_image(ref: Any, roots: tuple[Path, ...]) -> Any:
    """Open an image lazily (a path must lie inside `roots`), refuse a decompression bomb from its header size,
    then decode it as RGB."""
    with warnings.catch_warnings():  # PIL warns from 1x its limit; the processor's limit is PIL's 2x
        warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
        try:
            img = open_image(ref, roots)
        except PIL.Image.DecompressionBombError as e:
            raise TaskError(f"refused as a possible decompression bomb ({e})") from None
        w, h = img.size
        limit = max_image_pixels()
        if limit is not None and w * h > limit:
            raise TaskError(f"image of {w}x{h} = {w * h} pixels is over the {limit} pixel limit "
                            "(refused as a possible decompression bomb)")
        return img.convert("RGB")


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
    """Append records as JSON lines in one write, then flush and fsync (a checkpoint per batch)."""
    f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    f.flush()
    os.fsync(f.fileno())


def rank_logs(out_dir: Path) -> list[Path]:
    """The `samples.rank{r}.jsonl` logs of a data-parallel run in `out_dir`, by rank."""
    logs = [(int(m.group(1)), p) for p in out_dir.glob("samples.rank*.jsonl")
            if (m := re.fullmatch(r"samples\.rank(\d+)\.jsonl", p.name))]
    return [p for _, p in sorted(logs)]


def merge_logs(out_dir: Path, samples: list[Sample]) -> list[dict]:
    """Merge `samples.jsonl` and every rank log into `samples.jsonl` (dataset order, the first record of each
    id kept; ids not in `samples` kept at the end), written atomically; then delete the rank logs. A file
    already in order, with no rank logs, is only repaired. Returns the records."""
    path = out_dir / "samples.jsonl"
    parts = rank_logs(out_dir)
    records: list[dict] = []
    seen: set = set()
    for p in [path, *parts]:
        for r in read_records(p, repair=True):
            if r["id"] not in seen:
                seen.add(r["id"])
                records.append(r)
    order = {s.id: i for i, s in enumerate(samples)}
    ranked = sorted(records, key=lambda r: order.get(r["id"], len(order)))
    if not parts and ranked == records:
        return records
    records = ranked
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        _append(f, records)
    os.replace(tmp, path)
    _fsync_dir(out_dir)
    for p in parts:
        p.unlink()
    return records


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _as_dict(params: Any) -> dict:
    if dataclasses.is_dataclass(params):
        return dataclasses.asdict(params)
    return dict(params) if isinstance(params, dict) else dict(vars(params))


# ---------------------------------------------------------------- a task

def run_task(spec: TaskSpec, samples: list[Sample], backend: Backend, out_dir: Path, params: Any, *,
             batch_size: int = 1, resume: bool = False, config: dict | None = None,
             on_progress: Callable[[int, int], None] | None = None, data_source: str = "",
             sample_timeout: float | None = None, dist: Dist = SINGLE) -> dict | None:
    """Generate, parse and score every sample not already logged in `out_dir`; write the results. In a
    data-parallel run every rank calls this; only rank 0 returns the results (the others None)."""
    if batch_size < 1:
        raise TaskError(f"--batch-size {batch_size}: must be at least 1")
    if sample_timeout is not None and sample_timeout <= 0:
        raise TaskError(f"--sample-timeout {sample_timeout}: must be positive")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "samples.jsonl"
    if (path.exists() or rank_logs(out_dir)) and not resume:
        raise TaskError(f"{path}: already exists; pass --resume to continue that run or choose another --output")
    dist.barrier()  # every rank has looked before rank 0 writes
    if dist.is_main:
        merge_logs(out_dir, samples)  # what an interrupted run (any number of ranks) left
    dist.barrier()
    done = {r["id"] for r in read_records(path)}
    todo = [s for s in samples if s.id not in done]
    mine = dist.shard(todo)
    gen = Generator(spec, backend, params, batch_size, sample_timeout)
    n_errors = 0
    started, t0 = now(), time.perf_counter()
    timings0 = backend_timings(backend)
    requests0 = len(getattr(backend, "requests", None) or [])
    tokens = 0  # from the replies' token ids: only for a backend without a token counter (see below)
    own = path if not dist.enabled else out_dir / f"samples.rank{dist.rank}.jsonl"
    with open(own, "a", encoding="utf-8") as f:
        i = 0
        while i < len(mine):
            batch = mine[i : i + gen.batch_size]  # shrinks after an out-of-memory split
            i += len(batch)
            records = gen.run_batch(batch)
            tokens += sum(r.get("generated_tokens") or 0 for r in records)
            n_errors += sum(bool(r["error"]) for r in records)
            _append(f, records)
            if on_progress:
                on_progress(len(batch), n_errors)
    wall = time.perf_counter() - t0
    timings1 = backend_timings(backend)
    if "generated_tokens" in timings1:  # the backend's own count: servers return usage, not token ids
        tokens = int(timings1["generated_tokens"] - timings0.get("generated_tokens", 0.0))
    stats = {"samples": len(mine), "wall_s": wall, "tokens": tokens, "oom_splits": gen.oom_splits,
             "timeouts": gen.timeouts, "effective_batch_size": gen.batch_size,
             "time_s": {k: timings1.get(k, 0.0) - timings0.get(k, 0.0) for k in TIMING_KEYS},
             "request_latency_s": _request_latencies(backend, requests0)}
    per_rank = dist.gather(stats)  # also the barrier: every rank log is complete after it
    if not dist.is_main:
        return None
    records = merge_logs(out_dir, samples)
    n = sum(r["samples"] for r in per_rank)
    wall = max(r["wall_s"] for r in per_rank)
    tokens = sum(r["tokens"] for r in per_rank)
    throughput = {
        "samples": n, "wall_s": round(wall, 3),
        "samples_per_s": round(n / wall, 4) if wall > 0 and n else None,
        "generated_tokens": tokens,
        "generated_tokens_per_s": round(tokens / wall, 2) if wall > 0 and n else None,
        "time_s": {k: round(sum(r["time_s"][k] for r in per_rank), 4) for k in TIMING_KEYS},
        "resumed_from": len(done),
        "ranks": dist.world_size,
        "oom_splits": sum(r["oom_splits"] for r in per_rank),
        "effective_batch_size": min(r["effective_batch_size"] for r in per_rank),
        "timeouts": sum(r["timeouts"] for r in per_rank),
    }
    latencies = sorted(x for r in per_rank for x in r["request_latency_s"])
    if latencies or hasattr(backend, "requests"):
        throughput["requests"] = latency_summary(latencies)
    extra = {"model_info": dict(getattr(backend, "info", {}) or {}), "throughput": throughput,
             "started": started, "finished": now(), "data_source": data_source}
    cfg = {**(config or {}), "batch_size": batch_size, "generation": _as_dict(params),
           "sample_timeout": sample_timeout, "world_size": dist.world_size}
    return finish(spec, samples, records, out_dir, cfg, extra)


def _request_latencies(backend: Any, start: int) -> list[float]:
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


def is_oom(e: BaseException) -> bool:
    """An out-of-memory error from a backend: `BatchOutOfMemory`, torch's (CUDA) OutOfMemoryError, or a
    RuntimeError saying so (MPS, CPU allocator)."""
    if isinstance(e, BatchOutOfMemory):
        return True
    torch = sys.modules.get("torch")  # no torch imported: no torch error can have been raised
    if torch is not None:
        types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)) if t)
        if types and isinstance(e, types):
            return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def _free_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class Generator:
    """Runs batches on a backend and turns replies and failures into sample records.

    Failures: a batch that raises is retried one sample at a time; one that runs out of memory is halved
    (and `batch_size` lowered for later batches) down to single samples. Timeouts (`sample_timeout` seconds
    per batch; every sample of a batch is in flight for the whole batch, so this is each sample's latency):
    a backend whose `chat` takes `on_tokens` (the Engine) is stopped cooperatively at the first decode step
    past the deadline, in the main thread, without killing anything; preprocessing and prefill cannot be cut
    short, so a batch that returns late is marked too. Every sample of a timed-out batch is logged as an
    error and not retried."""

    def __init__(self, spec: TaskSpec, backend: Backend, params: Any, batch_size: int,
                 sample_timeout: float | None = None) -> None:
        self.spec, self.backend, self.params = spec, backend, params
        self.batch_size = batch_size
        self.timeout = sample_timeout
        self.oom_splits = 0
        self.timeouts = 0
        try:
            self._streams = "on_tokens" in inspect.signature(backend.chat).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            self._streams = False

    def _generated(self) -> int | None:
        """The backend's generated-token counter (`timings.generated_tokens`), None when it keeps none."""
        value = backend_timings(self.backend).get("generated_tokens")
        return None if value is None else int(value)

    def _chat(self, convs: list[list[dict]]) -> list[Any]:
        if self.timeout is None:
            return self.backend.chat(convs, self.params)
        limit = self.timeout
        deadline = time.monotonic() + limit

        def late() -> SampleTimeout:
            return SampleTimeout(f"generation of a batch of {len(convs)} ran past --sample-timeout {limit:g}s")

        if self._streams:
            def check(row: int, new_ids: list[int]) -> None:
                if time.monotonic() > deadline:
                    raise late()

            replies = self.backend.chat(convs, self.params, on_tokens=check)
        else:
            replies = self.backend.chat(convs, self.params)
        if time.monotonic() > deadline:
            raise late()
        return replies

    def run_batch(self, batch: list[Sample]) -> list[dict]:
        """The records of `batch`, in order."""
        spec = self.spec
        convs: list[tuple[Sample, list[dict]]] = []
        records: dict[str, dict] = {}
        for s in batch:
            try:
                convs.append((s, conversation(spec, s)))
            except Exception as e:  # missing/corrupt media: log it, go on
                records[s.id] = score_sample(spec, s, None, f"{type(e).__name__}: {e}")
        groups = [convs] if convs else []
        while groups:
            group = groups.pop(0)
            before = self._generated()
            try:
                replies = self._chat([c for _, c in group])
                if len(replies) != len(group):
                    raise RuntimeError(f"backend returned {len(replies)} replies for {len(group)} conversations")
            except SampleTimeout as e:
                self.timeouts += len(group)
                for s, _ in group:
                    records[s.id] = score_sample(spec, s, None, f"SampleTimeout: {e}")
                continue
            except Exception as e:
                if is_oom(e):
                    _free_memory()
                    if len(group) > 1:
                        half = (len(group) + 1) // 2
                        self.oom_splits += 1
                        self.batch_size = min(self.batch_size, half)
                        log.warning("out of memory with a batch of %d; retrying in batches of %d",
                                    len(group), self.batch_size)
                        cap = self.batch_size  # the groups still queued shrink too
                        groups = [g[k : k + cap] for g in [group, *groups] for k in range(0, len(g), cap)]
                        continue
                elif len(group) > 1:
                    groups = [[g] for g in group] + groups
                    continue
                s = group[0][0]
                records[s.id] = score_sample(spec, s, None, f"{type(e).__name__}: {e}")
                continue
            counted = self._generated() - before if before is not None else None
            for (s, _), reply in zip(group, replies):
                ids = getattr(reply, "token_ids", None)
                # per sample: the reply's token ids; a server returns none, so then the backend's counter when
                # the call held this sample alone; else unknown (null)
                n_tokens = len(ids) if ids else counted if len(group) == 1 else None
                extra = {"finish_reason": getattr(reply, "finish_reason", None), "generated_tokens": n_tokens}
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
