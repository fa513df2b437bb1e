"""`qwen3vl-eval bench`: throughput and latency of our implementation (and transformers with --baseline hf)."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer

from qwen3vl_eval.backends import require_transformers
from qwen3vl_eval.checkpoints.hub import TINY_NAMES
from qwen3vl_eval.commands import handle_errors, resolve_target
from qwen3vl_eval.commands import options as opt
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.config import PRESETS  # torch-free

PRESET_HELP = (f"Random weights of a released size: {', '.join(PRESETS)}. The tiny random checkpoints are "
               f"--model values: {', '.join(TINY_NAMES)}.")


@handle_errors
def bench(
    model: opt.Model = None,
    preset: Optional[str] = typer.Option(None, "--preset", help=PRESET_HELP),
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    batch_size: str = typer.Option("1", "--batch-size", help="A batch size or a comma list, e.g. 1,8,32."),
    prompt_tokens: str = typer.Option("128", "--prompt-tokens", help="Text tokens per row (or a comma list); "
                                      "visual tokens come on top."),
    image: list[str] = typer.Option([], "--image", help="A synthetic image WIDTHxHEIGHT per row; repeatable."),
    video: Optional[str] = typer.Option(None, "--video", help="A synthetic clip SECONDSxFPS or SECONDSxFPS@WxH (frames "
                                        "already sampled) or a media file, per row."),
    new_tokens: int = typer.Option(64, "--new-tokens", help="Tokens generated per row (exactly; no early stop)."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed repeats before measuring."),
    repeats: int = typer.Option(3, "--repeats", help="Timed repeats (medians with min/max are reported)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Also run a baseline backend: hf "
                                           "(transformers, from the golden extra)."),
    fast: Optional[bool] = typer.Option(None, "--fast/--no-fast", help="Native CUDA-graph decode step "
                                        "(default: on for CUDA, as the engine)."),
    compile_step: bool = typer.Option(False, "--compile", help="With --fast: fuse the decode step with "
                                      "torch.compile (inductor) before capturing it."),
    peak_bandwidth_gbs: Optional[float] = typer.Option(None, "--peak-bandwidth-gbs", help="Device memory "
                                                       "bandwidth for the decode utilisation (default: table)."),
    peak_tflops: Optional[float] = typer.Option(None, "--peak-tflops", help="Device peak TFLOP/s in the run's "
                                                "dtype for the prefill utilisation (default: table)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights and synthetic inputs."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write the rows (a JSON list) here too."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Report folder (default "
                                          "reports/bench/<timestamp>-<model>/): bench.json, report.md, PNGs."),
    charts: bool = typer.Option(True, "--charts/--no-charts", help="Write throughput.png and latency.png."),
) -> None:
    """Measure preprocessing, vision, time to first token, prefill and decode speed, and peak memory.

    Exit 1 when any configuration failed (its row carries the error), 2 on bad input.
    """
    from qwen3vl_eval.model.config import Qwen3VLConfig

    if (model is None) == (preset is None):
        raise InputError("give exactly one of --model DIR|ID and --preset NAME")
    preset_config = Qwen3VLConfig.from_name(preset) if preset is not None else None  # a bad name fails here
    if baseline not in (None, "hf"):
        raise InputError(f"--baseline {baseline!r}: only 'hf' is supported")
    if baseline == "hf":
        require_transformers("--baseline hf")
    if new_tokens < 1 or warmup < 0 or repeats < 1:
        raise InputError("--new-tokens and --repeats must be >= 1, --warmup >= 0")
    from qwen3vl_eval.bench import inputs as bi
    from qwen3vl_eval.bench.measure import bench as run_bench
    from qwen3vl_eval.bench.models import hf_factory, native_factory, preset_folder
    from qwen3vl_eval.bench.report import write_outputs
    from qwen3vl_eval.bench.rooflines import device_peak
    from qwen3vl_eval.processor import Processor
    from qwen3vl_eval.report.files import write_json
    from qwen3vl_eval.runtime.provenance import device_name

    target = resolve_target(model, device, dtype)
    dev, dt = target.device, target.dtype
    if fast and dev.type != "cuda":
        raise InputError("--fast needs a CUDA device")
    use_fast = fast if fast is not None else dev.type == "cuda"
    if compile_step and not use_fast:
        raise InputError("--compile needs the CUDA-graph decode step (--fast on a CUDA device)")
    images = tuple(bi.parse_image(x) for x in image)
    clip = bi.parse_video(video) if video else None
    configs = [bi.BenchConfig(bs, p, new_tokens, images, clip)
               for p in bi.parse_int_list(prompt_tokens, "--prompt-tokens")
               for bs in bi.parse_int_list(batch_size, "--batch-size")]
    peak = None
    if dev.type == "cuda":
        peak = device_peak(device_name(dev), bandwidth_gbs=peak_bandwidth_gbs, tflops=peak_tflops)
        if peak is None:
            typer.echo(f"note: no peak figures for {device_name(dev)}; pass --peak-bandwidth-gbs and "
                       "--peak-tflops for utilisation", err=True)

    with tempfile.TemporaryDirectory(prefix="qwen3vl-bench-") as tmp:
        if target.path is not None:
            folder, name = target.path, str(model)
        else:
            assert preset is not None
            folder = preset_folder(preset_config, Path(tmp) / "preset")
            name = f"Qwen3-VL-{preset.split('/')[-1].removeprefix('Qwen3-VL-')} (random weights)"
        config = Qwen3VLConfig.from_file(folder / "config.json")
        random_weights = target.path is None
        backends = [("native", native_factory(folder, name=name, device=dev, dtype=dt, fast=use_fast,
                                              compile=compile_step, random_weights=random_weights, seed=seed))]
        if baseline == "hf":
            backends.append(("hf", hf_factory(folder, name=name, device=dev, dtype=dt,
                                              random_weights=random_weights, seed=seed)))
        with bi.BenchInputs(Processor.from_pretrained(folder), seed=seed, workdir=Path(tmp)) as inputs:
            rows = run_bench(backends, configs, inputs, model=name, model_config=config, device=dev, dtype=dt,
                             warmup=warmup, repeats=repeats, peak=peak, log=lambda m: typer.echo(m, err=True))

    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
    out_dir = output or Path("reports") / "bench" / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
    report = write_outputs(rows, out_dir, charts=charts)
    if json_file:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_file, rows)
    typer.echo(report.read_text())
    typer.echo(f"report: {report}")
    failed = [r for r in rows if r.get("error")]
    if failed:
        typer.echo(f"{len(failed)} configuration(s) failed", err=True)
        raise typer.Exit(1)
