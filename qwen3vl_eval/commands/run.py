"""`qwen3vl-eval run`: run task suites on a model; per task samples.jsonl, results.json and report.md.

Stopping: Ctrl-C (SIGINT) or SIGTERM stops the run at once; every finished batch is already on disk, the
command prints how to resume and exits 130 (SIGINT) or 143 (SIGTERM). Data parallel: launched by torchrun
(`torchrun --nproc-per-node N -m qwen3vl_eval run ...`) each process evaluates a shard; see
`qwen3vl_eval.distributed` and docs/scale-out.md.
"""

from __future__ import annotations

import functools
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from qwen3vl_eval import distributed
from qwen3vl_eval.commands import fail, handle_errors
from qwen3vl_eval.errors import InputError

BACKENDS = ("native",)
F = TypeVar("F", bound=Callable[..., Any])
RUN_STATE: dict[str, Path] = {}
VIDEO_PROMPTS = ("trained", "transformers5")


def default_output(model: str, root: Path = Path("reports/runs")) -> Path:
    """reports/runs/<timestamp>-<model name>/"""
    name = re.sub(r"[^\w.-]+", "_", Path(model.rstrip("/")).name or model) or "model"
    return root / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"


def latest_output(model: str, root: Path = Path("reports/runs")) -> Path | None:
    """The newest reports/runs/*-<model name>/ (what --resume continues when --output is not given)."""
    suffix = default_output(model, root).name.split("-", 2)[-1]
    runs = sorted(p for p in root.glob(f"*-{suffix}") if p.is_dir()) if root.is_dir() else []
    return runs[-1] if runs else None


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt (exit 143)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def progress_bar(enabled: bool = True) -> Any:
    """A rich progress bar: samples, rate, ETA, errors."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    TextColumn("errors {task.fields[errors]}"), transient=False, disable=not enabled)


def interruptible(fn: F) -> F:
    """SIGINT or SIGTERM during `fn`: one line on stderr saying how to resume, exit 130 or 143 (finished
    batches are on disk already). The process group of a data-parallel run is left in every case."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
        previous = signal.signal(signal.SIGTERM, _on_sigterm) if main else None
        RUN_STATE.clear()
        try:
            return fn(*args, **kwargs)
        except (KeyboardInterrupt, Terminated) as e:
            code = 143 if isinstance(e, Terminated) else 130
            where = f" --output {RUN_STATE['output']}" if "output" in RUN_STATE else ""
            raise fail(f"interrupted ({'SIGTERM' if code == 143 else 'SIGINT'}); finished samples are kept; "
                       f"continue with the same command plus --resume{where}", code) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
            distributed.shutdown()

    return wrapper  # type: ignore[return-value]


@handle_errors
@interruptible
def run(
    task: str = typer.Option(..., "--task", help="Task or suite names, comma separated (see `qwen3vl-eval tasks`)."),
    model: str = typer.Option(..., "--model", help="Checkpoint folder or Hub id in the local cache (or tiny)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N samples of each task (for testing)."),
    batch_size: int = typer.Option(1, "--batch-size", help="Conversations generated together."),
    output: Optional[Path] = typer.Option(None, "--output", help="Run folder (default "
                                          "reports/runs/<timestamp>-<model>/); one subfolder per task."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output (default: the latest run "
                                "of this model), skipping samples already in samples.jsonl."),
    data: Optional[str] = typer.Option(None, "--data", help="Local copy of the task's data (parquet, JSONL, "
                                       "save_to_disk or downloaded HF folder), or another Hub id org/name[@rev]."),
    media_root: Optional[Path] = typer.Option(None, "--media-root", help="Folder the videos resolve against."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Override every task's limit."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 is greedy (the default for evaluation)."),
    top_p: float = typer.Option(1.0, "--top-p"),
    top_k: int = typer.Option(0, "--top-k", help="0 is off."),
    video_prompt: str = typer.Option("trained", "--video-prompt", help="trained or transformers5."),
    backend: str = typer.Option("native", "--backend", help="native (hf and openai come later)."),
    sample_timeout: Optional[float] = typer.Option(None, "--sample-timeout", help="Seconds a batch's generation "
                                                   "may take; past it, each of its samples is logged as an error "
                                                   "(decoding stops at the next token)."),
) -> None:
    """Run tasks or suites on a model and write samples.jsonl, results.json and report.md per task.
    Under torchrun, each process evaluates a round-robin shard and rank 0 merges and scores."""
    from qwen3vl_eval.eval.data import load_samples
    from qwen3vl_eval.eval.runner import generation_kwargs, run_task
    from qwen3vl_eval.eval.task import resolve_tasks

    ctx = distributed.from_env()  # rank 0 of 1 unless launched by torchrun

    if backend not in BACKENDS:
        raise InputError(f"--backend {backend}: not available yet (available: {', '.join(BACKENDS)})")
    if video_prompt not in VIDEO_PROMPTS:
        raise InputError(f"--video-prompt {video_prompt}: expected trained or transformers5")
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: must be at least 1")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    if sample_timeout is not None and not sample_timeout > 0:
        raise InputError(f"--sample-timeout {sample_timeout}: must be a positive number of seconds")
    specs = resolve_tasks(task)
    if data and len(specs) > 1:
        raise InputError(f"--data: applies to one task, but --task {task} names {len(specs)}")
    if output is None:
        output = latest_output(model) if resume else default_output(model)
        output = ctx.broadcast(output)  # every rank writes into rank 0's (time-stamped) folder
        if output is None:
            raise InputError(f"--resume: no earlier run of {model} under reports/runs; pass --output")
    elif resume and not output.is_dir():
        raise InputError(f"--output {output}: no such run folder to resume")
    RUN_STATE["output"] = output  # named in the message if the run is interrupted
    device = distributed.rank_device(device, ctx)

    loaded = []
    for spec in specs:  # all data first, so a missing dataset fails before the model loads
        samples = load_samples(spec, data, media_root)
        samples = samples[:limit] if limit else samples
        if samples and all(s.error for s in samples):
            raise InputError(f"{spec.task}: no sample has its media, e.g. {samples[0].error}")
        loaded.append((spec, samples))

    from qwen3vl_eval.engine import Engine, GenerationParams

    engine = Engine(model, device=device, dtype=dtype, video_prompt=video_prompt)
    config = {"model": model, "backend": backend, "device": device, "dtype": dtype, "video_prompt": video_prompt,
              "limit": limit, "seed": seed, "data": data, "media_root": str(media_root) if media_root else None,
              "resume": resume, "sample_timeout": sample_timeout}
    overrides = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
                 "seed": seed}
    summary = []
    with progress_bar(ctx.is_main) as bar:
        for spec, samples in loaded:
            kw = generation_kwargs(spec, overrides)
            if "stop" in kw:
                kw["stop"] = tuple(kw["stop"])
            params = GenerationParams(**kw)
            bar_id = bar.add_task(spec.task, total=len(samples), errors=0, rate="")
            state = {"done": 0, "t0": time.perf_counter()}

            def advance(n: int, errors: int, bar_id: Any = bar_id, state: dict = state) -> None:
                state["done"] += n
                rate = state["done"] / max(time.perf_counter() - state["t0"], 1e-9)
                bar.update(bar_id, advance=n, errors=errors, rate=f"{rate:.2f} samples/s")

            results = run_task(spec, samples, engine, output / spec.task, params, batch_size=batch_size,
                               resume=resume, config={**config, "task_data": spec.data.describe()},
                               on_progress=advance, data_source=data or spec.data.describe(),
                               sample_timeout=sample_timeout, dist=ctx)
            # samples finished in an earlier (resumed) run, or by other ranks
            bar.update(bar_id, completed=len(samples))
            if results is not None:
                summary.append(results)
    if ctx.is_main:
        _print_summary(summary, output)


def _print_summary(results: list[dict], output: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table("task", "metrics", "n", "errors", "parse fail %")
    for r in results:
        m = {k: v for k, v in r["metrics"].items() if k != "parse_failure_rate"}
        t.add_row(r["task"], ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in m.items()),
                  str(r["n_samples"]), str(r["n_errors"]),
                  f"{r['metrics']['parse_failure_rate']:.1f}" if r["metrics"]["parse_failure_rate"] is not None
                  else "-")
    Console(file=sys.stdout).print(t)
    print(f"results in {output}")
