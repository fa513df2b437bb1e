"""Reliability of `run`: real crashes (SIGKILL, SIGINT, SIGTERM on a subprocess) then --resume, determinism
across processes, out-of-memory batch splitting, per-sample timeouts, bounded memory on long videos.

Subprocess runs use the session's QWEN3VL_EVAL_CACHE (tests/conftest.py), so the tiny checkpoint and the
synthetic data are built once, and OMP_NUM_THREADS=1 so every process (torchrun's too) computes alike."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
from helpers import (
    SMOKE_RUN,
    SMOKE_TASKS,
    FakeBackend,
    OpaqueFakeBackend,
    assert_same_as,
    baseline_run,
    cli,
    complete_lines,
    qcli,
    start,
    subprocess_env,
    wait_for_lines,
)

from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.runner import BatchOutOfMemory, is_oom, run_task
from qwen3vl_eval.eval.sample_log import read_records
from qwen3vl_eval.eval.task import load_registry

REGISTRY = load_registry()
TIMING_FIELDS: set[str] = set()  # samples.jsonl records hold no timing fields (results.json does)


# ---------------------------------------------------------------- determinism

def test_same_command_twice_gives_identical_samples(tmp_path_factory, tmp_path):
    base = baseline_run(tmp_path_factory)
    out = tmp_path / "again"
    r = qcli(*SMOKE_RUN, "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert_same_as(base, out)
    for t in SMOKE_TASKS:
        for rec in read_records(out / t / "samples.jsonl"):
            assert not TIMING_FIELDS & set(rec) and not any(k.endswith(("_s", "_ms", "time")) for k in rec), rec


# ---------------------------------------------------------------- crashes

def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path_factory, tmp_path):
    base = baseline_run(tmp_path_factory)
    out = tmp_path / "killed"
    p = start([sys.executable, "-m", "qwen3vl_eval", *SMOKE_RUN, "--output", str(out)])
    wait_for_lines(out, 3, p)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    unfinished = [t for t in SMOKE_TASKS if not (out / t / "results.json").is_file()]
    assert unfinished, "killed after the run had finished"
    log = out / unfinished[0] / "samples.jsonl"  # a write torn by the kill, as a crash mid-write leaves it
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        f.write(b'{"id": "1", "prediction": "tor')
    r = qcli(*SMOKE_RUN, "--output", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert_same_as(base, out)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_cleanly_and_resumes(tmp_path_factory, tmp_path, sig, code):
    base = baseline_run(tmp_path_factory)
    out = tmp_path / "stopped"
    p = start([sys.executable, "-m", "qwen3vl_eval", *SMOKE_RUN, "--output", str(out)])
    wait_for_lines(out, 3, p)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted") and "--resume" in last and str(out) in last, err
    kept = complete_lines(out)
    assert kept >= 3
    if sig == signal.SIGTERM:
        return  # same path as SIGINT from here on
    r = qcli(*SMOKE_RUN, "--output", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert_same_as(base, out)


def test_torn_and_unterminated_last_lines(tmp_path):
    log = tmp_path / "samples.jsonl"
    log.write_bytes(b'{"id": "a", "x": 1}\n{"id": "b", "x": 2}\n{"id": "c", "x"')
    assert [r["id"] for r in read_records(log)] == ["a", "b"]
    assert log.read_bytes().endswith(b'"x"')  # reading alone never changes the file
    assert [r["id"] for r in read_records(log, repair=True)] == ["a", "b"]
    assert log.read_bytes() == b'{"id": "a", "x": 1}\n{"id": "b", "x": 2}\n'
    log.write_bytes(b'{"id": "a"}\n{"id": "b"}')  # complete record, newline lost
    assert [r["id"] for r in read_records(log, repair=True)] == ["a", "b"]
    assert log.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    log.write_bytes(b'{"id": "a"}\nnot json\n{"id": "b"}\n')  # damage inside the file is not silently dropped
    with pytest.raises(TaskError, match=":2: bad record"):
        read_records(log)


# ---------------------------------------------------------------- out of memory

PARAMS = SimpleNamespace(max_new_tokens=4, temperature=0.0)


def cuda_oom() -> BaseException:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def oom_backend(fits: int, error: Callable[[], BaseException] = cuda_oom) -> FakeBackend:
    """Answers "A", but raises `error()` for any batch larger than `fits`."""
    return FakeBackend(token_ids=(1, 2), fits=fits, oom=error)


@pytest.mark.parametrize("error", [
    lambda: torch.cuda.OutOfMemoryError("CUDA out of memory"),
    lambda: torch.OutOfMemoryError("out of memory"),
    lambda: BatchOutOfMemory("fake"),
    lambda: RuntimeError("CUDA error: out of memory"),
], ids=["cuda_oom", "torch_oom", "double", "runtime_error"])
def test_out_of_memory_halves_the_batch_and_is_reported(tmp_path, error):
    spec = REGISTRY["synth_grounding"]
    samples = load_samples(spec)[:8]
    backend = oom_backend(fits=2, error=error)
    res = run_task(spec, samples, backend, tmp_path / "oom", PARAMS, batch_size=8)
    assert res["n_errors"] == 0 and res["n_samples"] == 8
    assert backend.sizes[:3] == [8, 4, 2] and set(backend.sizes[3:]) == {2}  # later batches start small
    assert res["throughput"]["oom_splits"] == 2 and res["throughput"]["effective_batch_size"] == 2
    saved = json.loads((tmp_path / "oom" / "results.json").read_text())
    assert saved["throughput"]["oom_splits"] == 2
    plain = run_task(spec, samples, oom_backend(fits=8), tmp_path / "plain", PARAMS, batch_size=8)
    assert res["metrics"] == plain["metrics"] and plain["throughput"]["oom_splits"] == 0


def test_out_of_memory_on_a_single_sample_is_a_logged_error(tmp_path):
    spec = REGISTRY["synth_text"]
    samples = load_samples(spec)[:3]
    res = run_task(spec, samples, oom_backend(fits=0), tmp_path, PARAMS, batch_size=2)
    recs = read_records(tmp_path / "samples.jsonl")
    assert res["n_errors"] == 3 and all(r["error"].startswith("OutOfMemoryError") for r in recs)


def test_is_oom_does_not_catch_other_errors():
    assert not is_oom(RuntimeError("shape mismatch")) and not is_oom(ValueError("out of memory"))
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 3 bytes"))


# ---------------------------------------------------------------- timeouts

def test_timeout_stops_generation_at_the_next_step(tmp_path):
    spec = REGISTRY["synth_text"]
    samples = load_samples(spec)[:2]
    backend = FakeBackend(steps=100, step_s=0.01, finish_reason="length")
    t0 = time.perf_counter()
    res = run_task(spec, samples, backend, tmp_path, PARAMS, batch_size=2, sample_timeout=0.1)
    assert time.perf_counter() - t0 < 0.9  # 100 steps would take 1 s
    assert backend.done_steps < 50
    recs = read_records(tmp_path / "samples.jsonl")
    assert res["n_errors"] == 2 and all(r["error"].startswith("SampleTimeout") for r in recs)
    assert res["throughput"]["timeouts"] == 2 and res["config"]["sample_timeout"] == 0.1


def test_timeout_marks_a_late_batch_of_a_backend_that_cannot_stop(tmp_path):
    spec = REGISTRY["synth_text"]
    samples = load_samples(spec)[:2]
    late = OpaqueFakeBackend(steps=5, step_s=0.03, finish_reason="length")
    res = run_task(spec, samples, late, tmp_path / "late", PARAMS, batch_size=1, sample_timeout=0.05)
    assert res["n_errors"] == 2
    res = run_task(spec, samples, FakeBackend(steps=1, step_s=0.0, finish_reason="length"), tmp_path / "quick", PARAMS,
                   batch_size=2, sample_timeout=30)
    assert res["n_errors"] == 0 and res["throughput"]["timeouts"] == 0


def test_sample_timeout_option_on_the_real_engine(tmp_path):
    out = tmp_path / "t"
    args = ["run", "--task", "synth_text", "--model", "tiny", "--limit", "2", "--max-new-tokens", "64",
            "--device", "cpu", "--output", str(out)]
    r = cli(*args, "--sample-timeout", "0.000001")
    assert r.exit_code == 0, r.output
    recs = read_records(out / "synth_text" / "samples.jsonl")
    assert len(recs) == 2 and all("--sample-timeout" in rec["error"] for rec in recs)
    r = cli(*args, "--sample-timeout", "0")
    assert r.exit_code == 2 and "--sample-timeout" in r.output


# ---------------------------------------------------------------- memory on long videos

MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    import av, numpy as np
    from qwen3vl_eval.processor import Processor

    folder, ckpt = Path(sys.argv[1]), sys.argv[2]

    def video(path, n):
        with av.open(str(path), "w") as c:
            s = c.add_stream("mpeg4", rate=30)
            s.width = s.height = 192
            s.pix_fmt = "yuv420p"
            for k in range(n):
                f = np.full((192, 192, 3), (k * 7) % 255, np.uint8)
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        return path

    short, long = video(folder / "short.mp4", 60), video(folder / "long.mp4", 1800)
    proc = Processor.from_pretrained(ckpt)
    conv = lambda p: [{"role": "user", "content": [{"type": "video", "video": str(p), "max_frames": 8}]}]
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    proc(conv(short)); proc(conv(short))
    before = rss()
    out = proc(conv(long))
    print(json.dumps({"growth_mb": rss() - before, "grid": out.video_grid_thw.tolist()}))
""")


def test_long_video_memory_stays_bounded(tiny_ckpt, tmp_path):
    """A 60 s, 1800-frame 192x192 video (all frames decoded would be 200 MB as RGB) sampled to 8 frames: peak
    RSS grows by far less than the decoded clip, so frames are streamed, not collected."""
    script = tmp_path / "mem.py"
    script.write_text(MEMORY_SCRIPT)
    r = subprocess.run([sys.executable, str(script), str(tmp_path), str(tiny_ckpt)], capture_output=True,
                       text=True, timeout=300, env=subprocess_env())
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["grid"][0][0] == 4  # 8 frames -> 4 temporal groups
    assert stats["growth_mb"] < 60, stats
