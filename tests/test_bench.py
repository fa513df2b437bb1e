"""`bench`: measurement core with fake step functions on CPU, row schema, rooflines, reports and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from qwen3vl_eval.bench import core as B
from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS
from qwen3vl_eval.cli import app
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.config import PRESETS
from qwen3vl_eval.runtime import timing as T

CPU = torch.device("cpu")
CONTRACT_KEYS = ("backend", "batch_size", "prompt_tokens", "new_tokens", "ttft_ms", "prefill_tokens_per_s",
                 "decode_tokens_per_s", "tpot_ms", "peak_memory_mb")
OUR_KEYS = ("vision_ms", "device", "dtype", "versions", "date", "model")


def test_measure_counts_calls_and_times_them():
    calls = []

    def step():
        calls.append(1)
        time.sleep(0.002)

    times = T.measure(step, warmup=2, repeats=3, device=CPU)
    assert len(calls) == 5 and len(times) == 3
    assert all(t >= 2.0 for t in times)
    with pytest.raises(ValueError):
        T.measure(step, warmup=0, repeats=0, device=CPU)


def test_stopwatch_on_cpu_times_the_call_and_returns_its_result():
    out, ms = T.Stopwatch(CPU).time(lambda: (time.sleep(0.01), 42)[1])
    assert out == 42 and 10.0 <= ms < 1000.0


def test_timings_record_adds_subtracts_resets():
    a = T.Timings(preprocess=1.0, vision=2.0, prefill=3.0, decode=4.0, prompt_tokens=10, generated_tokens=5)
    a.count("retries")
    a.count("retries")
    assert a.as_dict() == {"preprocess_s": 1.0, "vision_s": 2.0, "prefill_s": 3.0, "decode_s": 4.0,
                           "prompt_tokens": 10, "generated_tokens": 5, "retries": 2}
    before = a.copy()
    a.decode += 0.5
    a.generated_tokens += 3
    a.count("wall_s", 1.5)
    spent = a - before
    assert (spent.decode, spent.generated_tokens, spent.prefill) == (0.5, 3, 0.0)
    assert spent.extra == {"retries": 0, "wall_s": 1.5}
    assert (before + spent).as_dict() == a.as_dict()
    held = a
    a.reset()
    assert held.as_dict() == T.Timings().as_dict() and held.extra == {}
    assert before.decode == 4.0  # copies are independent


def test_peak_and_resident_memory_on_cpu():
    T.reset_peak_memory(CPU)
    mb, kind = T.peak_memory_mb(CPU)
    assert kind.startswith("rss_peak") and mb > 0
    resident = T.resident_memory_mb(CPU)
    assert resident is None or 0 < resident <= mb + 1
    T.free(CPU)


def test_derive_by_hand():
    fig = B.derive({"preprocess_ms": 2.0, "vision_ms": 3.0, "ttft_ms": 10.0, "latency_ms": 73.0},
                   batch_size=4, input_tokens=100, new_tokens=64)
    assert fig["prefill_tokens_per_s"] == pytest.approx(4 * 100 / 0.010)
    assert fig["tpot_ms"] == pytest.approx(1.0)
    assert fig["decode_tokens_per_s"] == pytest.approx(4000.0)
    assert fig["e2e_ms"] == pytest.approx(75.0)
    one = B.derive({"ttft_ms": 10.0, "latency_ms": 10.0}, batch_size=1, input_tokens=5, new_tokens=1)
    assert one["tpot_ms"] is None and one["decode_tokens_per_s"] is None
    noisy = B.derive({"ttft_ms": 10.0, "latency_ms": 9.0}, batch_size=1, input_tokens=5, new_tokens=8)
    assert noisy["tpot_ms"] is None  # latency below TTFT: no figure rather than a nonsense one


@dataclass
class FakeBackend:
    """Sleeps instead of computing: prepare 1 ms, vision 2 ms, generate(n) 3 ms + n x 1 ms."""

    name: str = "native"
    fail_on_generate: bool = False
    config = TINY_CONFIGS["default"]

    def prepare(self, cfg):
        time.sleep(0.001)
        ids = torch.zeros(cfg.batch_size, cfg.prompt_tokens + 4, dtype=torch.long)
        return B.Prepared({"input_ids": ids, "pixel_values": torch.zeros(16, 8)}, ids.shape[1], 4, [(1, 4, 4)])

    def vision(self, inputs):
        time.sleep(0.002)

    def generate(self, inputs, new_tokens):
        if self.fail_on_generate:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        time.sleep(0.003 + 0.001 * new_tokens)
        return new_tokens

    def close(self):
        pass


def test_run_config_with_fake_backend():
    cfg = B.BenchConfig(batch_size=2, prompt_tokens=10, new_tokens=11)
    row, reps = B.run_config(FakeBackend(), cfg, warmup=1, repeats=3, device=CPU)
    assert len(reps) == 3
    assert row["input_tokens"] == 14 and row["visual_tokens"] == 4 and row["visual_grids"] == [[1, 4, 4]]
    assert 4.0 <= row["ttft_ms"] <= 40.0  # 3 + 1 ms, generous for a loaded machine
    assert row["ttft_ms_min"] <= row["ttft_ms"] <= row["ttft_ms_max"]
    assert row["vision_ms"] >= 2.0 and row["preprocess_ms"] >= 1.0
    assert row["tpot_ms"] == pytest.approx(1.0, abs=0.8)
    assert row["decode_tokens_per_s"] == pytest.approx(2 * 1000 / row["tpot_ms"], rel=0.5)
    assert row["peak_memory_kind"].startswith("rss_peak") and row["peak_memory_mb"] > 0


def test_run_config_rejects_early_stop():
    class Short(FakeBackend):
        def generate(self, inputs, new_tokens):
            return max(1, new_tokens - 1) if new_tokens > 1 else 1

    with pytest.raises(RuntimeError, match="expected exactly"):
        B.run_config(Short(), B.BenchConfig(1, 4, 8), warmup=0, repeats=1, device=CPU)


def test_bench_rows_schema_and_failures():
    cfgs = [B.BenchConfig(1, 8, 4), B.BenchConfig(4, 8, 4, images=((64, 48),))]

    def broken():
        raise RuntimeError("CUDA out of memory while loading")

    rows = B.bench([("native", FakeBackend), ("hf", lambda: FakeBackend(name="hf", fail_on_generate=True)),
                    ("other", broken)], cfgs, model="fake", device=CPU, dtype=torch.float32, warmup=0,
                   repeats=2, log=lambda m: None)
    assert len(rows) == 6
    for r in rows:
        for k in CONTRACT_KEYS + OUR_KEYS + B.ROW_KEYS:
            assert k in r, k
        json.dumps(r)  # JSON-ready
    ok, oom, build = rows[:2], rows[2:4], rows[4:]
    assert all(r["error"] is None and r["ttft_ms"] > 0 for r in ok)
    assert [r["batch_size"] for r in ok] == [1, 4] and ok[1]["images"] == ["64x48"]
    assert all(r["error"].startswith("OutOfMemoryError: CUDA out of memory") and r["ttft_ms"] is None for r in oom)
    assert all(r["error"].startswith("model build failed") for r in build)
    assert ok[0]["versions"]["torch"] == torch.__version__ and ok[0]["dtype"] == "float32"


def test_report_and_charts(tmp_path):
    rows = B.bench([("native", FakeBackend), ("hf", lambda: FakeBackend(name="hf"))],
                   [B.BenchConfig(1, 8, 4), B.BenchConfig(2, 8, 4)], model="fake-model", device=CPU,
                   dtype=torch.bfloat16, warmup=0, repeats=1, log=lambda m: None)
    report = B.write_outputs(rows, tmp_path).read_text()
    assert "## fake-model · bfloat16 · prompt 8, new 4" in report
    assert "| native | 1 |" in report and "| hf | 2 |" in report
    assert "Native speed-up over the baseline" in report
    head = report.splitlines()[2]
    for piece in ("model fake-model", "dtype bfloat16", "device", "torch " + torch.__version__, rows[0]["date"]):
        assert piece in head
    assert json.loads((tmp_path / "bench.json").read_text()) == rows
    for png in ("throughput.png", "latency.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("preset,gb", [("2B", 3.44), ("4B", 8.04), ("8B", 15.14), ("32B", 63.97),
                                       ("30B-A3B", 6.08)])
def test_decode_bytes_match_published_bounds(preset, gb):
    """research/perf_anchors.md 4.2: bf16 bytes read per batch-1 decode token (no context)."""
    got = B.decode_bytes_per_step(PRESETS[preset], batch_size=1, context=0, dtype_bytes=2) / 1e9
    assert got == pytest.approx(gb, abs=0.01)


def test_decode_bytes_grow_with_batch_and_context():
    cfg = PRESETS["8B"]
    one = B.decode_bytes_per_step(cfg, batch_size=1, context=0, dtype_bytes=2)
    kv = B.decode_bytes_per_step(cfg, batch_size=2, context=1000, dtype_bytes=2) - one
    assert kv == 2 * 36 * 8 * 128 * 1000 * 2 * 2  # K and V, layers, kv heads, head dim, tokens, rows, bytes
    moe = PRESETS["30B-A3B"]
    assert B.decode_bytes_per_step(moe, batch_size=64, context=0, dtype_bytes=2) > 5 * B.decode_bytes_per_step(
        moe, batch_size=1, context=0, dtype_bytes=2)


def test_prefill_flops_dense_8b():
    # 2 x non-embedding params per token dominates; 8B has 6.95e9 of them.
    f = B.prefill_flops(PRESETS["8B"], batch_size=1, tokens=1000)
    assert 2 * 6.94e9 * 1000 < f < 2 * 7.2e9 * 1000


def test_device_peaks():
    assert B.device_peak("NVIDIA H100 80GB HBM3").bandwidth_gbs == 3350
    assert B.device_peak("NVIDIA H100 PCIe").name == "H100 PCIe"
    h200 = B.device_peak("NVIDIA H200")
    assert h200.bandwidth_gbs == 4800 and h200.tflops(torch.bfloat16) == 989 and h200.tflops(torch.float32) == 67
    assert B.device_peak("NVIDIA A100-SXM4-80GB").bandwidth_gbs == 2039
    assert B.device_peak("NVIDIA L4").bandwidth_gbs == 300
    assert B.device_peak("Mystery GPU") is None
    assert B.device_peak("Mystery GPU", bandwidth_gbs=100, tflops=10).tflops(torch.bfloat16) == 10
    assert B.device_peak("NVIDIA H200", bandwidth_gbs=4000).bandwidth_gbs == 4000


def test_utilization_fields():
    cfg = B.BenchConfig(1, 100, 65)
    row = {"input_tokens": 100, "tpot_ms": 10.0, "ttft_ms": 20.0}
    peak = B.DevicePeak("X", 1000.0, 100.0, 10.0)
    B.add_utilization(row, PRESETS["2B"], cfg, torch.bfloat16, peak, [])
    expected = row["decode_bytes_per_step"] / 0.010 / 1e12
    assert row["decode_bandwidth_util"] == pytest.approx(expected)
    assert row["prefill_flops_util"] == pytest.approx(row["prefill_flops"] / 0.020 / 100e12)
    assert row["vision_flops"] is None and row["vision_flops_util"] is None


@pytest.mark.parametrize("fn,arg", [(B.parse_image, "448"), (B.parse_image, "0x10"), (B.parse_video, "8s"),
                                    (B.parse_video, "0x2"), (B.parse_video, "/no/such/file.mp4")])
def test_parse_errors(fn, arg):
    with pytest.raises(InputError):
        fn(arg)


def test_parsers():
    assert B.parse_image("448x336") == (448, 336)
    v = B.parse_video("4x2")
    assert (v.seconds, v.fps, v.frames, (v.width, v.height)) == (4.0, 2.0, 8, B.DEFAULT_VIDEO_FRAME)
    assert B.parse_video("1.5x3@320x240").frames == 4  # 4.5 frames, rounded half to even
    assert B.parse_video("3x1").frames == 4  # 3 frames padded to whole temporal patches of 2

    assert B.parse_int_list("1, 8,32", "--batch-size") == [1, 8, 32]
    with pytest.raises(InputError):
        B.parse_int_list("1,0", "--batch-size")


def test_input_builder_layout(tiny_ckpt):
    cfg = TINY_CONFIGS["default"]
    builder = B.InputBuilder(cfg, model_dir=tiny_ckpt, seed=0)
    bc = B.BenchConfig(3, 10, 4, images=((64, 64), (96, 64)), video=B.parse_video("2x2@64x48"))
    p = builder.build(bc)
    t = p.tensors
    ids = t["input_ids"]
    mu = cfg.vision.merge_unit
    assert ids.shape == (3, p.input_tokens) and t["attention_mask"].all()
    assert int((ids == cfg.image_token_id).sum()) == t["pixel_values"].shape[0] // mu
    assert int((ids == cfg.video_token_id).sum()) == t["pixel_values_videos"].shape[0] // mu
    assert t["image_grid_thw"].shape == (6, 3) and t["video_grid_thw"].shape == (3, 3)
    per_row_vis = int((ids[0] == cfg.image_token_id).sum() + (ids[0] == cfg.video_token_id).sum())
    starts = int((ids[0] == cfg.vision_start_token_id).sum())
    assert p.visual_tokens == per_row_vis + 2 * starts and p.input_tokens == 10 + p.visual_tokens
    assert starts == 2 + int(t["video_grid_thw"][0, 0])  # one block per image, one per video frame group
    assert int(ids.max()) <= max(cfg.image_token_id, cfg.video_token_id, cfg.vision_end_token_id)
    assert torch.equal(builder.build(bc).tensors["input_ids"], ids)  # seeded


def test_bench_cli_tiny(tmp_path, tiny_ckpt):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["bench", "--model", str(tiny_ckpt), "--device", "cpu", "--batch-size", "1,2",
                                 "--prompt-tokens", "8", "--image", "32x32", "--new-tokens", "3", "--warmup", "0",
                                 "--repeats", "1", "--output", str(out), "--json", str(tmp_path / "rows.json")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["batch_size"] for r in rows] == [1, 2] and all(r["error"] is None for r in rows)
    for k in CONTRACT_KEYS + OUR_KEYS:
        assert k in rows[0]
    assert rows[0]["backend"] == "native" and rows[0]["fast"] is False and rows[0]["new_tokens"] == 3
    assert (out / "report.md").is_file() and (out / "throughput.png").is_file()


@pytest.mark.parametrize("args", [
    ["--preset", "8B", "--model", "x"],
    [],
    ["--preset", "8B", "--image", "12"],
    ["--preset", "nope"],
    ["--preset", "8B", "--baseline", "vllm"],
    ["--preset", "8B", "--batch-size", "0"],
])
def test_bench_cli_bad_input(args, tmp_path):
    r = CliRunner().invoke(app, ["bench", "--device", "cpu", "--output", str(tmp_path), *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output


def test_transformers_is_never_imported_at_import_time():
    code = ("import sys, qwen3vl_eval.cli, qwen3vl_eval.bench.core, qwen3vl_eval.compare.render; "
            "assert 'transformers' not in sys.modules; assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stopwatch_and_peak_memory():
    dev = torch.device("cuda")
    a = torch.randn(2048, 2048, device=dev)
    sw = T.Stopwatch(dev)
    _, ms = sw.time(lambda: [a @ a for _ in range(20)])
    assert ms > 0
    T.reset_peak_memory(dev)
    b = torch.empty(64 << 20, dtype=torch.uint8, device=dev)
    mb, kind = T.peak_memory_mb(dev)
    assert kind == "cuda_max_allocated" and mb >= 64
    del b


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bench_tiny(tiny_ckpt, tmp_path):
    import importlib.util

    args = ["bench", "--model", str(tiny_ckpt), "--device", "cuda", "--batch-size", "1,4", "--prompt-tokens",
            "16", "--image", "64x64", "--new-tokens", "8", "--warmup", "1", "--repeats", "2",
            "--peak-bandwidth-gbs", "1000", "--peak-tflops", "100", "--output", str(tmp_path)]
    if importlib.util.find_spec("transformers") is not None:
        args += ["--baseline", "hf"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = json.loads((Path(tmp_path) / "bench.json").read_text())
    assert all(r["error"] is None and r["decode_bandwidth_util"] is not None for r in rows)
    assert all(r["peak_memory_kind"] == "cuda_max_allocated" for r in rows)
