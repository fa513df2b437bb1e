"""The evaluation loop: samples -> conversations -> backend.chat (batches) -> records in samples.jsonl, then
results.json and report.md (CONTRACTS section 5). The log is `eval.sample_log`, scoring and results
`eval.results`.

A sample that fails (missing or corrupt media, a prompt the backend rejects) is logged with its error, counts as
0 and in `n_errors`, and the run goes on; a batch that raises is retried one sample at a time to find the
culprit. `resume=True` skips ids already logged; a resume with nothing left to generate keeps the earlier run's
throughput figures (`throughput.from_earlier_run`).

Resources: an out-of-memory error (`torch.OutOfMemoryError`, a RuntimeError saying "out of memory", or
`BatchOutOfMemory`) halves the batch and retries; later batches keep the smaller size, and results.json
records the splits (`throughput.oom_splits`, `throughput.effective_batch_size`). `sample_timeout` marks every
sample of a batch whose generation takes longer as an error (see `Generator`). Signals (SIGINT, SIGTERM) are the
command's (`commands/run.py`): finished batches are on disk already.

Data parallel (`qwen3vl_eval.eval.distributed`): each rank generates a round-robin shard of the samples still to do
and appends to its own `samples.rank{r}.jsonl`; after a barrier rank 0 merges every log into `samples.jsonl`
(dataset order, one record per id), deletes the rank logs and scores. A resume, with any number of ranks,
first merges whatever logs an interrupted run left.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qwen3vl_eval.backends.base import Backend
from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.adapters import Sample
from qwen3vl_eval.eval.distributed import SINGLE, Dist
from qwen3vl_eval.eval.media import checked_image
from qwen3vl_eval.eval.prompts import PROMPTS, build_messages
from qwen3vl_eval.eval.results import (
    TIMING_KEYS,
    earlier_throughput,
    finish,
    now,
    request_latencies,
    score_sample,
    throughput,
)
from qwen3vl_eval.eval.sample_log import append_records, merge_logs, rank_logs, read_records
from qwen3vl_eval.eval.task import TaskSpec
from qwen3vl_eval.runtime.timing import free

log = logging.getLogger(__name__)


class BatchOutOfMemory(Exception):
    """Raised by a backend (or a test double) when a batch does not fit in memory: the runner splits it."""


class SampleTimeout(Exception):
    """A batch's generation ran past `--sample-timeout`."""


def conversation(spec: TaskSpec, sample: Sample) -> list[dict]:
    """The chat messages of a sample; raises on missing or corrupt media."""
    if sample.error:
        raise TaskError(sample.error)
    images = [checked_image(ref, sample.media_roots) for ref in sample.images]
    return build_messages(PROMPTS[spec.prompt], sample, images, spec.media)


def _as_dict(params: Any) -> dict:
    if dataclasses.is_dataclass(params):
        return dataclasses.asdict(params)
    return dict(params) if isinstance(params, dict) else dict(vars(params))


def run_task(spec: TaskSpec, samples: list[Sample], backend: Backend, out_dir: Path, params: Any, *,
             batch_size: int = 1, resume: bool = False, config: dict | None = None,
             on_progress: Callable[[int, int], None] | None = None, data_source: str = "",
             sample_timeout: float | None = None, dist: Dist = SINGLE, judge: Any = None) -> dict | None:
    """Generate, parse and score every sample not already logged in `out_dir`; write the results (judged by
    `judge`, an `eval.judge.Judge`, when the task has a `judge:` block). In a data-parallel run every rank
    calls this; only rank 0 returns the results (the others None)."""
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
    timings0 = backend.timings.copy()
    requests0 = len(getattr(backend, "requests", None) or [])
    own = path if not dist.enabled else out_dir / f"samples.rank{dist.rank}.jsonl"
    with open(own, "a", encoding="utf-8") as f:
        i = 0
        while i < len(mine):
            batch = mine[i : i + gen.batch_size]  # shrinks after an out-of-memory split
            i += len(batch)
            records = gen.run_batch(batch)
            n_errors += sum(bool(r["error"]) for r in records)
            append_records(f, records)
            if on_progress:
                on_progress(len(batch), n_errors)
    wall = time.perf_counter() - t0
    spent = backend.timings - timings0
    tokens = spent.generated_tokens  # the backend's own count: servers return usage, not token ids
    stats = {"samples": len(mine), "wall_s": wall, "tokens": tokens, "oom_splits": gen.oom_splits,
             "timeouts": gen.timeouts, "effective_batch_size": gen.batch_size,
             "time_s": {k: getattr(spent, k) for k in TIMING_KEYS},
             "request_latency_s": request_latencies(backend, requests0)}
    per_rank = dist.gather(stats)  # also the barrier: every rank log is complete after it
    if not dist.is_main:
        return None
    records = merge_logs(out_dir, samples)
    tp = throughput(per_rank, resumed_from=len(done), with_requests=hasattr(backend, "requests"))
    extra = {"model_info": dict(backend.info()), "throughput": earlier_throughput(out_dir, tp),
             "started": started, "finished": now(), "data_source": data_source}
    cfg = {**(config or {}), "batch_size": batch_size, "generation": _as_dict(params),
           "sample_timeout": sample_timeout, "world_size": dist.world_size}
    return finish(spec, samples, records, out_dir, cfg, extra, judge)


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
        # a Thinking checkpoint's reply without </think> was cut off mid-reasoning (backend info "thinking")
        self.thinking = bool(backend.info().get("thinking"))
        try:
            self._streams = "on_tokens" in inspect.signature(backend.chat).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            self._streams = False

    def _generated(self) -> int:
        """The backend's generated-token counter (`timings.generated_tokens`)."""
        return self.backend.timings.generated_tokens

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
                    free()
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
            counted = self._generated() - before
            for (s, _), reply in zip(group, replies):
                ids = getattr(reply, "token_ids", None)
                # per sample: the reply's token ids; a server returns none, so then the backend's counter when
                # the call held this sample alone; else unknown (null)
                n_tokens = len(ids) if ids else counted if len(group) == 1 else None
                extra = {"finish_reason": getattr(reply, "finish_reason", None), "generated_tokens": n_tokens}
                records[s.id] = score_sample(spec, s, reply.text, extra=extra, thinking=self.thinking,
                                             split=(reply.reasoning, reply.answer))
        return [records[s.id] for s in batch]
