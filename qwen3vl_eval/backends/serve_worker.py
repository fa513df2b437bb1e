"""The serve worker: one thread owns the engine (the model is not thread-safe) and runs queued requests,
micro-batched: with `max_batch_size > 1` it collects the requests that arrive within `batch_wait_ms` of the
first (up to the limit) and runs those sharing generation parameters (and what they ask back: logprobs,
prompt logprobs) as one `Engine.chat` batch, or `Engine.complete` for raw token prompts. A batch that
fails is rerun one request at a time, so one bad request fails alone. The queue is bounded (`QueueFull`, HTTP
429), and a `Ticket` can be cancelled (its client left): dropped while queued, stopped at the next decode step
once every request of its batch is cancelled. A ticket's `on_tokens(new_ids)` (streaming) is called from the
worker thread as its tokens arrive."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from qwen3vl_eval.backends.base import Reply
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.sampling import GenerationParams

log = logging.getLogger("qwen3vl_eval.backends.serve")


class QueueFull(Exception):
    """The worker's queue is full (HTTP 429)."""


class Cancelled(Exception):
    """Every request of a running batch was cancelled (its clients left)."""


@dataclass
class Ticket:
    """A queued request: its conversation, parameters, result and cancellation flag. `cancel()` (the client
    left) drops it from the queue, or stops its batch at the next decode step once every request in the batch
    is cancelled."""

    conversation: list[dict] | list[int]  # a conversation, or a raw token prompt (`raw`)
    params: GenerationParams
    fit_context: bool = False  # max_tokens left to the default: lowered to the room the prompt leaves
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    raw: bool = False  # conversation holds token ids: Engine.complete
    on_tokens: Callable[[list[int]], None] | None = None

    def key(self) -> tuple:
        """Tickets with the same key can run as one batch."""
        return self.params, self.fit_context, self.logprobs, self.prompt_logprobs, self.raw

    def cancel(self) -> None:
        self.cancelled.set()
        self.future.cancel()  # a no-op once it runs; the decode-step check stops it then


class BatchWorker:
    """One thread that owns the engine: runs queued requests, micro-batched by shared generation parameters."""

    def __init__(self, engine: Any, max_batch_size: int = 1, batch_wait_ms: float = 5.0, *,
                 max_queue: int = 64, max_pixels: int | None = None) -> None:
        if max_batch_size < 1:
            raise InputError(f"--max-batch-size {max_batch_size}: must be at least 1")
        if max_queue < 1:
            raise InputError(f"--max-queue {max_queue}: must be at least 1")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.batch_wait_s = max(0.0, batch_wait_ms) / 1000
        self.batches: list[int] = []  # size of every engine.chat call, for tests and logs
        self.stats = {"running": 0, "cancelled": 0}
        try:
            accepted = set(inspect.signature(engine.chat).parameters)
        except (TypeError, ValueError):  # pragma: no cover
            accepted = set()
        self._kwargs = {k: v for k, v in (("max_pixels", max_pixels),) if k in accepted and v is not None}
        self._streams, self._fits = "on_tokens" in accepted, "fit_context" in accepted
        self._logprobs = "logprobs" in accepted
        self.completes = callable(getattr(engine, "complete", None))
        self._queue: queue.Queue[Ticket | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="qwen3vl-serve-worker", daemon=True)
        self._thread.start()

    def submit(self, conversation: list[dict] | list[int], params: GenerationParams, fit_context: bool = False,
               **options: Any) -> Ticket:
        """Queue a request (`options`: the other Ticket fields); QueueFull when `max_queue` requests already
        wait. Logprobs asked of an engine that cannot give them, or a raw prompt of one without `complete`,
        are an InputError."""
        ticket = Ticket(conversation, params, fit_context, **options)
        if (ticket.logprobs is not None or ticket.prompt_logprobs is not None) and not self._logprobs:
            raise InputError("logprobs are not available from this server's engine")
        if ticket.raw and not self.completes:
            raise InputError("this server's engine does not take raw prompts (/v1/completions)")
        try:
            self._queue.put_nowait(ticket)
        except queue.Full:
            raise QueueFull(f"the server is busy ({self._queue.maxsize} requests queued); retry later") from None
        return ticket

    def queued(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _collect(self, first: Ticket) -> tuple[list[Ticket], bool]:
        jobs, stop = [first], False
        deadline = time.monotonic() + self.batch_wait_s
        while len(jobs) < self.max_batch_size:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
        return jobs, stop

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            groups: dict[tuple, list[Ticket]] = {}
            for job in jobs:
                groups.setdefault(job.key(), []).append(job)
            for group in groups.values():
                self._run(group)
            if stop:
                return

    def _chat(self, jobs: list[Ticket]) -> list[Reply]:
        first = jobs[0]
        kwargs = {} if first.raw else dict(self._kwargs)
        if self._fits and first.fit_context:
            kwargs["fit_context"] = True
        if first.logprobs is not None:
            kwargs["logprobs"] = first.logprobs
        if first.prompt_logprobs is not None:
            kwargs["prompt_logprobs"] = first.prompt_logprobs
        if self._streams:
            def check(row: int, new_ids: list[int]) -> None:  # every client gone: stop decoding
                if all(j.cancelled.is_set() for j in jobs):
                    raise Cancelled()
                if jobs[row].on_tokens is not None and new_ids:
                    jobs[row].on_tokens(new_ids)

            kwargs["on_tokens"] = check
        run = self.engine.complete if first.raw else self.engine.chat
        return run([j.conversation for j in jobs], first.params, **kwargs)

    def _run(self, jobs: list[Ticket]) -> None:
        live = [j for j in jobs if not j.cancelled.is_set() and j.future.set_running_or_notify_cancel()]
        self.stats["cancelled"] += len(jobs) - len(live)
        if not live:
            return
        self.stats["running"] = len(live)
        try:
            self.batches.append(len(live))
            replies = self._chat(live)
        except Cancelled:
            self.stats["cancelled"] += len(live)
            for job in live:
                job.future.set_exception(Cancelled())
            return
        except Exception as e:  # noqa: BLE001 - reported to the client, never raised in the worker
            if len(live) > 1:  # find the culprit: each request alone
                for job in live:
                    fresh = dataclasses.replace(job, future=Future())
                    self._run([fresh])
                    _transfer(fresh.future, job.future)
                return
            if not isinstance(e, InputError):
                log.exception("request failed")
            live[0].future.set_exception(e)
            return
        finally:
            self.stats["running"] = 0
        for job, reply in zip(live, replies):
            job.future.set_result(reply)


def _transfer(src: Future, dst: Future) -> None:
    if src.cancelled():
        dst.set_exception(Cancelled())
    elif src.exception() is not None:
        dst.set_exception(src.exception())
    else:
        dst.set_result(src.result())
