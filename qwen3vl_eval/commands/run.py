"""`qwen3vl-eval run`: run task suites on a model; per task samples.jsonl, results.json and report.md."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from qwen3vl_eval.commands import handle_errors
from qwen3vl_eval.errors import InputError

BACKENDS = ("native",)
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


def progress_bar() -> Any:
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
                    TextColumn("errors {task.fields[errors]}"), transient=False)


@handle_errors
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
) -> None:
    """Run tasks or suites on a model and write samples.jsonl, results.json and report.md per task."""
    from qwen3vl_eval.eval.data import load_samples
    from qwen3vl_eval.eval.runner import generation_kwargs, run_task
    from qwen3vl_eval.eval.task import resolve_tasks

    if backend not in BACKENDS:
        raise InputError(f"--backend {backend}: not available yet (available: {', '.join(BACKENDS)})")
    if video_prompt not in VIDEO_PROMPTS:
        raise InputError(f"--video-prompt {video_prompt}: expected trained or transformers5")
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: must be at least 1")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    specs = resolve_tasks(task)
    if data and len(specs) > 1:
        raise InputError(f"--data: applies to one task, but --task {task} names {len(specs)}")
    if output is None:
        output = latest_output(model) if resume else default_output(model)
        if output is None:
            raise InputError(f"--resume: no earlier run of {model} under reports/runs; pass --output")
    elif resume and not output.is_dir():
        raise InputError(f"--output {output}: no such run folder to resume")

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
              "resume": resume}
    overrides = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
                 "seed": seed}
    summary = []
    with progress_bar() as bar:
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
                               on_progress=advance, data_source=data or spec.data.describe())
            # samples finished in an earlier (resumed) run
            bar.update(bar_id, completed=len(samples))
            summary.append(results)
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
