"""`qwen3vl-eval run`: run task suites on a model; per task samples.jsonl, results.json and report.md.

Stopping: Ctrl-C (SIGINT) or SIGTERM stops the run at once; every finished batch is already on disk, the
command prints how to resume and exits 130 (SIGINT) or 143 (SIGTERM). Data parallel: launched by torchrun
(`torchrun --nproc-per-node N -m qwen3vl_eval run ...`) each process evaluates a shard; see
`qwen3vl_eval.eval.distributed` and docs/scale-out.md.

Backends (`qwen3vl_eval.backends.make_backend`): `native` (default), `hf` (transformers), `openai` (a server:
`--base-url`, `--api-key-env`, `--served-model-name`, `--concurrency`, `--request-timeout`, `--retries`,
`--video-mode`, `--video-url-scheme`; those flags with another backend are a usage error, exit 2). results.json records
the backend, its options (URL without credentials, the key's variable name, never the key) and its `model_info`.
`--judge-base-url`, `--judge-model`, `--judge-api-key-env`, `--judge-cache`: the LLM judge of tasks with a
`judge:` block, asked when a task is scored (`qwen3vl_eval.eval.judge`).
"""

from __future__ import annotations

import functools
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer

from qwen3vl_eval.commands import fail, handle_errors, resolve_target, task_registry
from qwen3vl_eval.commands import options as opt
from qwen3vl_eval.commands.backend_options import backend_options as check_backend_options
from qwen3vl_eval.commands.backend_options import missing_model, recorded_options
from qwen3vl_eval.commands.model_args import with_model_args
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.eval import distributed
from qwen3vl_eval.eval.rundir import RunLock, output_errors

F = TypeVar("F", bound=Callable[..., Any])
RUN_STATE: dict[str, Path] = {}


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
@with_model_args
def run(
    command: typer.Context,
    task: opt.Task,
    model: opt.Model,
    backend: opt.Backend = "native",
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    video_prompt: opt.VideoPrompt = "trained",
    resume: opt.Resume = False,
    seeds: opt.Seeds = 1,
    # every option below defaults to None (not given)
    model_args: opt.ModelArgs = None,
    include_path: opt.IncludePath = None,
    limit: opt.Limit = None,
    batch_size: opt.BatchSize = None,
    output: opt.RunOutput = None,
    data: opt.Data = None,
    media_root: opt.MediaRoot = None,
    recipe: opt.Recipe = None,
    max_new_tokens: opt.MaxNewTokens = None,
    seed: opt.Seed = None,
    temperature: opt.Temperature = None,
    top_p: opt.TopP = None,
    top_k: opt.TopK = None,
    presence_penalty: opt.PresencePenalty = None,
    repetition_penalty: opt.RepetitionPenalty = None,
    fps: opt.Fps = None,
    max_frames: opt.MaxFrames = None,
    min_pixels: opt.MinPixels = None,
    max_pixels: opt.MaxPixels = None,
    total_pixels: opt.TotalPixels = None,
    sample_timeout: opt.SampleTimeout = None,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = None,
    served_model_name: opt.ServedModelName = None,
    concurrency: opt.Concurrency = None,
    request_timeout: opt.RequestTimeout = None,
    retries: opt.Retries = None,
    video_mode: opt.VideoMode = None,
    video_url_scheme: opt.VideoUrlScheme = None,
    judge_base_url: opt.JudgeBaseUrl = None,
    judge_model: opt.JudgeModel = None,
    judge_api_key_env: opt.JudgeApiKeyEnv = None,
    judge_cache: opt.JudgeCache = None,
) -> None:
    """Run tasks or suites on a model and write samples.jsonl, results.json and report.md per task.
    Under torchrun, each process evaluates a round-robin shard and rank 0 merges and scores."""
    from qwen3vl_eval.eval.data import load_task_data, samples_sha256
    from qwen3vl_eval.eval.judge import judge_from_options
    from qwen3vl_eval.eval.recipes import check_recipe
    from qwen3vl_eval.eval.reports import limit_note
    from qwen3vl_eval.eval.runner import run_task
    from qwen3vl_eval.eval.summary import write_run_summary
    from qwen3vl_eval.eval.task import check_media, resolve_tasks, with_media
    from qwen3vl_eval.report.html import write_index, write_task_page

    ctx = distributed.from_env()  # rank 0 of 1 unless launched by torchrun

    backend_options = check_backend_options(
        backend, model=model, device=device, dtype=dtype, video_prompt=video_prompt, base_url=base_url,
        api_key_env=api_key_env, served_model_name=served_model_name, concurrency=concurrency,
        timeout=request_timeout, retries=retries, video_mode=video_mode, video_url_scheme=video_url_scheme)
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: must be at least 1")
    if batch_size is None:
        batch_size = (concurrency or 4) if backend == "openai" else 1
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    if sample_timeout is not None and not sample_timeout > 0:
        raise InputError(f"--sample-timeout {sample_timeout}: must be a positive number of seconds")
    if recipe is not None:
        check_recipe(recipe)
    if seeds < 1:
        raise InputError(f"--seeds {seeds}: must be at least 1")
    image_flags = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    video_flags = {"fps": fps, "max_frames": max_frames, "total_pixels": total_pixels, **image_flags}
    specs = [with_media(s, image_flags, video_flags) for s in resolve_tasks(task, task_registry(include_path))]
    for s in specs:
        check_media(s.media, f"{s.task}: media with --fps/--max-frames/--min-pixels/--max-pixels/--total-pixels")
    if data and len(specs) > 1:
        raise InputError(f"--data: applies to one task, but --task {task} names {len(specs)}")
    judge = judge_from_options(specs, judge_base_url, judge_model, judge_api_key_env, judge_cache)  # --judge-*
    if output is None:
        output = latest_output(model) if resume else default_output(model)
        output = ctx.broadcast(output)  # every rank writes into rank 0's (time-stamped) folder
        if output is None:
            raise InputError(f"--resume: no earlier run of {model} under reports/runs; pass --output")
    elif resume and not output.is_dir():
        raise InputError(f"--output {output}: no such run folder to resume")
    RUN_STATE["output"] = output  # named in the message if the run is interrupted
    if backend != "openai":  # a server holds the openai backend's devices
        device = backend_options["device"] = ctx.device(device)

    loaded, problems = [], [] if backend == "openai" else missing_model(model)
    for spec in specs:  # all data first, so a missing dataset fails before the model loads
        try:
            samples, provenance = load_task_data(spec, data, media_root)
        except InputError as e:
            problems.append(str(e))
            continue
        samples = samples[:limit] if limit else samples
        if samples and all(s.error for s in samples):
            hint = f"; videos: {spec.data.videos} (docs/data.md)" if spec.data.videos else ""
            problems.append(f"{spec.task}: no sample has its media, e.g. {samples[0].error}{hint}")
        provenance = {**provenance, "n_rows": len(samples), "rows_sha256": samples_sha256(samples)}
        loaded.append((spec, samples, provenance))
    if problems:  # every missing dataset and a missing model, in one message
        raise InputError(problems[0] if len(problems) == 1 else
                         f"{len(problems)} problems: " + " | ".join(f"({i}) {p}" for i, p in enumerate(problems, 1)))

    from qwen3vl_eval.backends import make_backend

    flags = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
             "seed": seed, "presence_penalty": presence_penalty, "repetition_penalty": repetition_penalty}
    for spec, _, _ in loaded:  # bad settings fail before the model loads
        try:
            generation_plan(spec, flags, recipe, False, None, seeds)
        except InputError as e:
            raise InputError(f"{spec.task}: generation setting {e} (task file or command line)") from None
    # one writer per run folder (rank 0 holds it for every rank of a data-parallel run), for the whole run
    lock = RunLock(output).acquire() if ctx.is_main else None
    try:
        if backend != "openai":  # the folder, device and dtype the model runs on, resolved once
            target = resolve_target(model, device, dtype)
            backend_options.update(model=target.path, model_name=target.name, device=target.device,
                                   dtype=target.dtype)
        engine = make_backend(backend, **backend_options)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    config = {"model": model, "backend": backend, "device": device, "dtype": dtype, "video_prompt": video_prompt,
              "limit": limit, "seed": seed, "data": data, "media_root": str(media_root) if media_root else None,
              "resume": resume, "sample_timeout": sample_timeout, "model_args": model_args,
              "backend_options": recorded_options(backend, backend_options)}
    thinking = bool(engine.info().get("thinking"))
    checkpoint_path = backend_options.get("model") if backend != "openai" else backend_options.get("processor")
    try:
        summary, pages = [], []
        if limit and ctx.is_main:
            print(f"WARNING {limit_note(limit)}", flush=True)
        with output_errors(output), progress_bar(ctx.is_main) as bar:
            for spec, samples, provenance in loaded:
                plan = generation_plan(spec, flags, recipe, thinking, checkpoint_path, seeds)
                bar_id = bar.add_task(spec.task, total=len(samples) * len(plan.params), errors=0, rate="")
                state = {"done": 0, "t0": time.perf_counter()}

                def advance(n: int, errors: int, bar_id: Any = bar_id, state: dict = state) -> None:
                    state["done"] += n
                    rate = state["done"] / max(time.perf_counter() - state["t0"], 1e-9)
                    bar.update(bar_id, advance=n, errors=errors, rate=f"{rate:.2f} samples/s")

                task_config = {**config, "task_data": spec.data.describe(), "data_provenance": provenance,
                               "media": spec.media, "thinking": thinking, **plan.record}
                per_seed = []
                for params in plan.params:
                    out_dir = output / spec.task
                    if len(plan.params) > 1:
                        out_dir = out_dir / f"seed-{params.seed}"
                    per_seed.append(run_task(spec, samples, engine, out_dir, params, batch_size=batch_size,
                                             resume=resume, config=task_config, on_progress=advance,
                                             data_source=data or spec.data.describe(),
                                             sample_timeout=sample_timeout, dist=ctx, judge=judge))
                # samples finished in an earlier (resumed) run, or by other ranks
                bar.update(bar_id, completed=len(samples) * len(plan.params))
                if per_seed[0] is not None:
                    if len(per_seed) > 1:
                        from qwen3vl_eval.eval.seeds import write_seed_summary

                        summary.append(write_seed_summary(output / spec.task, per_seed))
                        for params in plan.params:
                            write_task_page(output / spec.task / f"seed-{params.seed}", spec, samples, in_run=False)
                    else:
                        summary.append(per_seed[0])
                        pages.append(write_task_page(output / spec.task, spec, samples, in_run=True))
        if ctx.is_main:
            pages.append(write_index(output, pages))
            _print_summary(summary, output)
            if limit:
                print(f"WARNING {limit_note(limit)}")
            with output_errors(output):  # summary.json, summary.md, summary.png: every task in one table
                print(f"summary {write_run_summary(output)}")
            for p in pages:
                print(f"html {p.describe()}")
    finally:
        close = getattr(engine, "close", None)
        if callable(close):
            close()
        if judge is not None:
            judge.close()
        if lock is not None:
            lock.release()


@dataclass
class GenerationPlan:
    """A task's generation parameters (one per seed) and what results.json records about how they were chosen."""

    params: list[Any]
    record: dict[str, Any]


def generation_plan(spec: Any, flags: dict[str, Any], recipe: str | None, thinking: bool,
                    checkpoint: str | Path | None, seeds: int = 1) -> GenerationPlan:
    """The precedence of `eval.recipes.resolve` applied to one task: flags > recipe > task > default greedy >
    the checkpoint's generation_config.json; `seeds` > 1 repeats a sampled run with seed, seed+1, ..."""
    from dataclasses import asdict, replace

    from qwen3vl_eval.eval.recipes import SAMPLING_KEYS, chosen_recipe, resolve
    from qwen3vl_eval.model.sampling import GenerationParams

    name, origin = chosen_recipe(recipe, spec.recipe, thinking)
    base: dict[str, Any] = {}
    if checkpoint is not None and (Path(checkpoint) / "generation_config.json").is_file():
        defaults = asdict(GenerationParams.from_generation_config(Path(checkpoint) / "generation_config.json"))
        base = {k: defaults[k] for k in (*SAMPLING_KEYS, "max_new_tokens")}
    keys, sources = resolve(flags=flags, recipe=name, task=spec.generation, checkpoint=base)
    if "stop" in keys:
        keys["stop"] = tuple([keys["stop"]] if isinstance(keys["stop"], str) else keys["stop"])
    params = GenerationParams().with_overrides(**keys)
    if seeds > 1 and params.greedy:
        raise InputError(f"--seeds {seeds}: {spec.task} decodes greedily (temperature 0), so every seed gives the "
                         "same replies; use a sampling recipe (e.g. --recipe qwen-instruct) or --temperature")
    record = {"recipe": name or "greedy", "recipe_source": origin, "generation_sources": sources}
    if seeds > 1:
        record["seeds"] = [params.seed + k for k in range(seeds)]
    return GenerationPlan([replace(params, seed=params.seed + k) for k in range(seeds)], record)


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
    from qwen3vl_eval.eval.judge import judge_summary

    for line in filter(None, map(judge_summary, results)):
        print(line)
    print(f"results in {output}")
