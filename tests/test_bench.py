"""`bench`: timing module, measurement through the backend contract (fake backends on CPU), inputs built by the
real processor, rooflines, reports and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from qwen3vl_eval.backends.base import Backend, Reply
from qwen3vl_eval.backends.hf import with_mm_token_types
from qwen3vl_eval.bench import inputs as BI
from qwen3vl_eval.bench import measure as BM
from qwen3vl_eval.bench import report as BR
from qwen3vl_eval.bench import rooflines as RL
from qwen3vl_eval.bench.models import native_factory, preset_folder
from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS
from qwen3vl_eval.cli import app
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.config import PRESETS, Qwen3VLConfig, TextConfig, VisionConfig
from qwen3vl_eval.processor import Processor
from qwen3vl_eval.processor.video import format_timestamp
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
    spent = T.Timings(preprocess=0.002, vision=0.003, prefill=0.007, decode=0.063)
    fig = BM.derive(spent, wall_ms=80.0, batch_size=4, input_tokens=100, new_tokens=64, has_vision=True)
    assert fig["ttft_ms"] == pytest.approx(10.0) and fig["vision_ms"] == pytest.approx(3.0)
    assert fig["prefill_tokens_per_s"] == pytest.approx(4 * 100 / 0.010)
    assert fig["tpot_ms"] == pytest.approx(1.0) and fig["decode_tokens_per_s"] == pytest.approx(4000.0)
    assert fig["latency_ms"] == pytest.approx(73.0) and fig["e2e_ms"] == 80.0
    assert fig["preprocess_ms"] == pytest.approx(2.0) and fig["prefill_ms"] == pytest.approx(7.0)
    one = BM.derive(T.Timings(prefill=0.01), wall_ms=11.0, batch_size=1, input_tokens=5, new_tokens=1,
                    has_vision=False)
    assert one["tpot_ms"] is None and one["decode_tokens_per_s"] is None and one["vision_ms"] is None


def test_decode_is_timed_in_the_loop_even_when_prefill_dominates():
    """The old subtraction of two generate calls went negative when prefill dominated; the record cannot."""
    fig = BM.derive(T.Timings(prefill=0.5, decode=0.004), wall_ms=600.0, batch_size=1, input_tokens=4000,
                    new_tokens=5, has_vision=False)
    assert fig["tpot_ms"] == pytest.approx(1.0) and fig["decode_tokens_per_s"] == pytest.approx(1000.0)


class FakeBackend:
    """Implements the backend contract by sleeping: preprocess 1 ms, vision 2 ms (with media), prefill 3 ms,
    decode 1 ms per token after the first; records them in its `Timings` like the real backends."""

    def __init__(self, name: str = "native", *, fail_on_generate: bool = False, short: bool = False,
                 calls: list | None = None, slow_every: int = 0) -> None:
        self.name, self.fail_on_generate, self.short = name, fail_on_generate, short
        self.timings = T.Timings()
        self.calls = calls if calls is not None else []
        self.slow_every = slow_every
        self.closed = False

    def chat(self, conversations, params=None, *, base_dir=None, on_tokens=None):
        self.calls.append(self.name)
        if self.fail_on_generate:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        media = any(it.get("type") != "text" for c in conversations for it in c[-1]["content"])
        slow = 3.0 if self.slow_every and len(self.calls) % self.slow_every == 0 else 1.0
        for phase, seconds in (("preprocess", 0.001), ("vision", 0.002 if media else 0.0), ("prefill", 0.003),
                               ("decode", 0.001 * (params.max_new_tokens - 1) * slow)):
            time.sleep(seconds)
            setattr(self.timings, phase, getattr(self.timings, phase) + seconds)
        n = params.max_new_tokens - (1 if self.short else 0)
        return [Reply("x", [1] * n, "length", None, "x", 20) for _ in conversations]

    def info(self):
        return {"attention": "fake", "cuda_graph": False, "compile": False}

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def inputs(tiny_ckpt):
    with BI.BenchInputs(Processor.from_pretrained(tiny_ckpt), seed=0) as made:
        yield made


def _bench(backends, cfgs, inputs, **kw):
    kw = {"model": "fake", "model_config": TINY_CONFIGS["default"], "device": CPU, "dtype": torch.float32,
          "warmup": 0, "repeats": 2, "log": lambda m: None, **kw}
    return BM.bench(backends, cfgs, inputs, **kw)


def test_fake_backend_meets_the_contract():
    assert isinstance(FakeBackend(), Backend)


def test_bench_with_fake_backend(inputs):
    cfg = BI.BenchConfig(batch_size=2, prompt_tokens=10, new_tokens=11, images=((32, 32),))
    [row] = _bench([("native", FakeBackend)], [cfg], inputs, warmup=1, repeats=3)
    assert row["error"] is None and row["input_tokens"] == 20
    assert row["visual_tokens"] > 0 and len(row["visual_grids"]) == 1
    assert 5.0 <= row["ttft_ms"] <= 60.0  # 2 + 3 ms, generous for a loaded machine
    assert row["ttft_ms_min"] <= row["ttft_ms"] <= row["ttft_ms_max"]
    assert row["vision_ms"] >= 2.0 and row["preprocess_ms"] >= 1.0 and row["prefill_ms"] >= 3.0
    assert row["tpot_ms"] == pytest.approx(1.0, abs=0.8)
    assert row["decode_tokens_per_s"] == pytest.approx(2 * 1000 / row["tpot_ms"])
    assert row["e2e_ms"] >= row["latency_ms"] + row["preprocess_ms"] * 0.9
    assert row["peak_memory_kind"].startswith("rss_peak") and row["peak_memory_mb"] > 0
    assert (row["attention"], row["fast"], row["compile"]) == ("fake", False, False)


def test_bench_rejects_early_stop(inputs):
    [row] = _bench([("native", lambda: FakeBackend(short=True))], [BI.BenchConfig(1, 4, 8)], inputs, repeats=1)
    assert "expected exactly" in row["error"] and row["ttft_ms"] is None


def test_repeats_interleave_backends_and_every_backend_is_closed(inputs):
    calls: list = []
    made: list = []

    def factory(name):
        def make():
            made.append(FakeBackend(name, calls=calls))
            return made[-1]
        return make

    rows = _bench([("native", factory("native")), ("hf", factory("hf"))], [BI.BenchConfig(1, 4, 3)], inputs,
                  warmup=1, repeats=2)
    assert calls == ["native", "hf"] * 3
    assert [r["backend"] for r in rows] == ["native", "hf"] and all(r["error"] is None for r in rows)
    assert all(b.closed for b in made)


def test_spread_warning():
    row = {"ttft_ms": 10.0, "ttft_ms_min": 9.0, "ttft_ms_max": 12.1, "tpot_ms": 1.0, "tpot_ms_min": 0.95,
           "tpot_ms_max": 1.1, "vision_ms": None}
    [w] = BM.spread_warnings(row)
    assert w.startswith("ttft_ms repeats spread 31%")
    assert BM.spread_warnings({**row, "ttft_ms_max": 11.0}) == []  # 20% exactly is not above the limit


def test_noisy_repeats_warn_in_the_row_and_the_report(inputs, tmp_path):
    logged: list = []
    [row] = _bench([("native", lambda: FakeBackend(slow_every=2))], [BI.BenchConfig(1, 4, 20)], inputs,
                   repeats=3, log=logged.append)
    assert any(w.startswith("tpot_ms repeats spread") for w in row["warnings"])
    assert any("warning: native" in m and "tpot_ms" in m for m in logged)
    assert "tpot_ms repeats spread" in BR.render_report([row])


def test_bench_rows_schema_and_failures(inputs):
    cfgs = [BI.BenchConfig(1, 8, 4), BI.BenchConfig(4, 8, 4, images=((64, 48),))]

    def broken():
        raise RuntimeError("CUDA out of memory while loading")

    rows = _bench([("native", FakeBackend), ("hf", lambda: FakeBackend("hf", fail_on_generate=True)),
                   ("other", broken)], cfgs, inputs)
    assert len(rows) == 6
    for r in rows:
        for k in CONTRACT_KEYS + OUR_KEYS + BM.ROW_KEYS:
            assert k in r, k
        json.dumps(r)  # JSON-ready
    ok, oom, build = rows[:2], rows[2:4], rows[4:]
    assert all(r["error"] is None and r["ttft_ms"] > 0 for r in ok)
    assert [r["batch_size"] for r in ok] == [1, 4] and ok[1]["images"] == ["64x48"]
    assert all(r["error"].startswith("OutOfMemoryError: CUDA out of memory") and r["ttft_ms"] is None for r in oom)
    assert all(r["error"].startswith("model build failed") for r in build)
    assert ok[0]["versions"]["torch"] == torch.__version__ and ok[0]["dtype"] == "float32"


def test_report_and_charts(inputs, tmp_path):
    rows = _bench([("native", FakeBackend), ("hf", lambda: FakeBackend("hf"))],
                  [BI.BenchConfig(1, 8, 4), BI.BenchConfig(2, 8, 4)], inputs, model="fake-model",
                  dtype=torch.bfloat16, repeats=2)
    report = BR.write_outputs(rows, tmp_path).read_text()
    assert "## fake-model · bfloat16 · prompt 8, new 4" in report
    assert "| native | 1 |" in report and "| hf | 2 |" in report
    assert "Native speed-up over the baseline" in report
    assert "native (attention fake, CUDA-graph decode off, compile off)" in report
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
    got = RL.decode_bytes_per_step(PRESETS[preset], batch_size=1, context=0, dtype_bytes=2) / 1e9
    assert got == pytest.approx(gb, abs=0.01)


def test_decode_bytes_grow_with_batch_and_context():
    cfg = PRESETS["8B"]
    one = RL.decode_bytes_per_step(cfg, batch_size=1, context=0, dtype_bytes=2)
    kv = RL.decode_bytes_per_step(cfg, batch_size=2, context=1000, dtype_bytes=2) - one
    assert kv == 2 * 36 * 8 * 128 * 1000 * 2 * 2  # K and V, layers, kv heads, head dim, tokens, rows, bytes
    moe = PRESETS["30B-A3B"]
    assert RL.decode_bytes_per_step(moe, batch_size=64, context=0, dtype_bytes=2) > 5 * RL.decode_bytes_per_step(
        moe, batch_size=1, context=0, dtype_bytes=2)


def test_prefill_flops_dense_8b():
    # 2 x non-embedding params per token dominates; 8B has 6.95e9 of them.
    f = RL.prefill_flops(PRESETS["8B"], batch_size=1, tokens=1000)
    assert 2 * 6.94e9 * 1000 < f < 2 * 7.2e9 * 1000


# A MoE config small enough to count by hand: H=8, head_dim 4, 2 q heads, 1 kv head, 2 layers (layer 0 dense
# with intermediate 6, layer 1 MoE: 4 experts of intermediate 3, top 2), vocab 10, untied; vision depth 1.
HAND = Qwen3VLConfig(
    text=TextConfig(vocab_size=10, hidden_size=8, intermediate_size=6, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=4, mrope_section=(1, 1, 0), num_experts=4,
                    num_experts_per_tok=2, moe_intermediate_size=3, decoder_sparse_step=1, mlp_only_layers=(0,)),
    vision=VisionConfig(depth=1, hidden_size=4, intermediate_size=8, num_heads=1, out_hidden_size=8,
                        deepstack_visual_indexes=(0,), num_position_embeddings=4),
    model_type="qwen3_vl_moe", tie_word_embeddings=False)


def test_roofline_numbers_by_hand():
    p = RL.param_counts(HAND)
    # per layer: q 8x8, k 4x8, v 4x8, o 8x8 = 192; q/k norms 4 + 4; two layer norms 8 + 8 -> 216
    assert p.attention == 2 * 216
    assert p.dense_mlp == 3 * 8 * 6  # gate, up, down of layer 0
    assert p.router == 4 * 8 and p.experts == 4 * (8 * 2 * 3 + 3 * 8)  # gate_up (H, 2I), down (I, H)
    assert (p.embed, p.lm_head, p.final_norm, p.moe_layers) == (80, 80, 8, 1)
    assert p.text_dense == 432 + 144 + 32 + 8
    # batch 1 touches 2 of 4 experts; batch 2: 4 * (1 - (1/2)^2) = 3
    assert RL.experts_touched(HAND, 1) == 2 and RL.experts_touched(HAND, 2) == 3
    d = RL.decode_params(HAND, 2)
    assert d == {"attention": 432, "experts": 288 * 3 / 4, "router": 32, "dense_mlp": 144, "head": 88,
                 "total": 432 + 216 + 32 + 144 + 88}
    # KV: 2 (K, V) x 2 layers x 1 kv head x 4 dims x 10 tokens x 2 rows x 2 bytes
    assert RL.kv_bytes(HAND, context=10, batch_size=2, dtype_bytes=2) == 640
    assert RL.decode_bytes_per_step(HAND, batch_size=2, context=10, dtype_bytes=2) == 2 * 912 + 640
    # prefill of 3 tokens: active = 616 dense + 288 * 2/4 experts = 760; attention 2*2*2 layers*2 heads*4*(3*4/2)
    assert RL.prefill_flops(HAND, batch_size=1, tokens=3) == 2 * 760 * 3 + 2 * 2 * 2 * 2 * 4 * 6 + 2 * 80
    # vision: one 1x2x2 grid = 4 patches: 2 x params x 4 + attention 4 x 16 x 4 (hidden) x 1 (depth)
    assert RL.vision_flops(HAND, [(1, 2, 2)], 1) == 2 * p.vision * 4 + 4 * 16 * 4


def test_device_peaks():
    assert RL.device_peak("NVIDIA H100 80GB HBM3").bandwidth_gbs == 3350
    assert RL.device_peak("NVIDIA H100 PCIe").name == "H100 PCIe"
    h200 = RL.device_peak("NVIDIA H200")
    assert h200.bandwidth_gbs == 4800 and h200.tflops(torch.bfloat16) == 989 and h200.tflops(torch.float32) == 67
    assert RL.device_peak("NVIDIA A100-SXM4-80GB").bandwidth_gbs == 2039
    assert RL.device_peak("NVIDIA L4").bandwidth_gbs == 300
    assert RL.device_peak("Mystery GPU") is None
    assert RL.device_peak("Mystery GPU", bandwidth_gbs=100, tflops=10).tflops(torch.bfloat16) == 10
    assert RL.device_peak("NVIDIA H200", bandwidth_gbs=4000).bandwidth_gbs == 4000


def test_utilization_fields():
    row = {"input_tokens": 100, "tpot_ms": 10.0, "ttft_ms": 20.0}
    peak = RL.DevicePeak("X", 1000.0, 100.0, 10.0)
    RL.add_utilization(row, PRESETS["2B"], batch_size=1, new_tokens=65, dtype=torch.bfloat16, peak=peak, grids=[])
    expected = row["decode_bytes_per_step"] / 0.010 / 1e12
    assert row["decode_bandwidth_util"] == pytest.approx(expected)
    assert row["prefill_flops_util"] == pytest.approx(row["prefill_flops"] / 0.020 / 100e12)
    assert row["vision_flops"] is None and row["vision_flops_util"] is None


@pytest.mark.parametrize("fn,arg", [(BI.parse_image, "448"), (BI.parse_image, "0x10"), (BI.parse_video, "8s"),
                                    (BI.parse_video, "0x2"), (BI.parse_video, "/no/such/file.mp4")])
def test_parse_errors(fn, arg):
    with pytest.raises(InputError):
        fn(arg)


def test_parsers():
    assert BI.parse_image("448x336") == (448, 336)
    v = BI.parse_video("4x2")
    assert (v.seconds, v.fps, v.frames, (v.width, v.height)) == (4.0, 2.0, 8, BI.DEFAULT_VIDEO_FRAME)
    assert BI.parse_video("1.5x3@320x240").frames == 4  # 4.5 frames, rounded half to even
    assert BI.parse_video("3x1").frames == 4  # 3 frames padded to whole temporal patches of 2

    assert BI.parse_int_list("1, 8,32", "--batch-size") == [1, 8, 32]
    with pytest.raises(InputError):
        BI.parse_int_list("1,0", "--batch-size")


def test_bench_inputs_are_what_run_sends(tiny_ckpt, tmp_path):
    """Conversations processed by the real Processor: exact text tokens, the image pads, a video laid out
    with its `<t seconds>` timestamps, media that differ between rows, and seeded (same inputs again)."""
    proc = Processor.from_pretrained(tiny_ckpt)
    cfg = TINY_CONFIGS["default"]
    bc = BI.BenchConfig(3, 10, 4, images=((64, 64), (96, 64)), video=BI.parse_video("2x2@64x48"))
    with BI.BenchInputs(proc, seed=0) as made:
        convs = made.conversations(bc)
        layout = made.layout(bc)
        batch = proc(convs)
        again = BI.BenchInputs(proc, seed=0, workdir=tmp_path).conversations(bc)
        other = made.conversations(BI.BenchConfig(1, 10, 4, images=((64, 64),)))
        first, repeat = (Path(c[1][0]["content"][0]["image"]).read_bytes() for c in (convs, again))
    assert len(convs) == 3
    text = [it["text"] for it in convs[0][0]["content"] if it["type"] == "text"][0]
    assert len(proc.tokenizer.encode(text)) == 10
    ids, mask = batch.input_ids, batch.attention_mask
    assert int(mask[0].sum()) == layout["input_tokens"]
    assert int((ids[0] == cfg.image_token_id).sum()) + int((ids[0] == cfg.video_token_id).sum()) == \
        layout["visual_tokens"]
    assert batch.image_grid_thw.shape == (6, 3) and batch.video_grid_thw.shape == (3, 3)
    assert layout["visual_grids"] == batch.image_grid_thw[:2].tolist() + batch.video_grid_thw[:1].tolist()
    t = int(batch.video_grid_thw[0, 0])
    assert t == 2  # 4 frames sampled whole, 2 frames per temporal patch
    stamps = [format_timestamp(ts) for ts in batch.video_timestamps[0][:t]]
    assert len(set(stamps)) == t and layout["prompt"].count(" seconds>") == t
    for s in stamps:  # each frame group as `<t seconds><|vision_start|>pads<|vision_end|>`
        assert layout["prompt"].count(s + proc.vision_start + proc.video_token) == 1
    assert len(set(batch.image_hashes)) == 6 and len(set(batch.video_hashes)) == 3  # every row its own media
    same = [it["text"] for it in again[1][0]["content"] if it["type"] == "text"]
    assert same == [it["text"] for it in convs[1][0]["content"] if it["type"] == "text"]
    assert first == repeat
    assert other[0][0]["content"][0]["image"] != convs[0][0]["content"][0]["image"]


def test_hf_inputs_get_multimodal_token_types():
    ids = torch.tensor([[0, 7, 5, 5, 8, 1], [7, 6, 6, 8, 2, 3]])
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    out = with_mm_token_types({"input_ids": ids, "attention_mask": mask, "image_grid_thw": torch.ones(1, 3)},
                              image_token_id=5, video_token_id=6)
    assert out["mm_token_type_ids"].tolist() == [[0, 0, 1, 1, 0, 0], [0, 2, 2, 0, 0, 0]]
    given = {"input_ids": ids, "video_grid_thw": torch.ones(1, 3), "mm_token_type_ids": torch.zeros_like(ids)}
    assert with_mm_token_types(given, 5, 6) is given
    assert "mm_token_type_ids" not in with_mm_token_types({"input_ids": ids}, 5, 6)  # text only: not needed


def test_preset_path_random_weights_through_the_engine(tmp_path):
    """`bench --preset` builds a weightless checkpoint folder with the released processor and an Engine around
    random weights; a tiny shape with the real vocabulary and token ids stands in for a released size."""
    tiny = TINY_CONFIGS["default"]
    config = replace(tiny, text=replace(tiny.text, vocab_size=151936), image_token_id=151655,
                     video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
    folder = preset_folder(config, tmp_path / "preset")
    assert not list(folder.glob("*.safetensors"))
    engine = native_factory(folder, name="preset", device=CPU, dtype=torch.float32, fast=False, compile=False,
                            random_weights=True)()
    assert isinstance(engine, Backend)
    with BI.BenchInputs(engine.processor, seed=0) as made:
        bc = BI.BenchConfig(2, 6, 3, images=((32, 32),))
        params = replace(engine.defaults, max_new_tokens=3, temperature=0.0, ignore_eos=True)
        replies = engine.chat(made.conversations(bc), params)
        replies = engine.chat(made.conversations(bc), params)  # no vision cache: encoded again
    assert [len(r.token_ids) for r in replies] == [3, 3]
    assert engine.timings.vision > 0 and engine.vision_cache == {} and engine.timings.generated_tokens == 12
    assert engine.info()["cuda_graph"] is False and engine.info()["attention"]
    engine.close()


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
    code = ("import sys, qwen3vl_eval.cli, qwen3vl_eval.bench.measure, qwen3vl_eval.bench.models, "
            "qwen3vl_eval.bench.report, qwen3vl_eval.compare.render; "
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
