"""Data-parallel `run` under torchrun on CPU (gloo, 2 processes): merged results identical to a single process;
a 2-rank run killed mid-way resumes with 1 process. Plus the sharding, merging and device rules in process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from helpers import (
    SMOKE_RUN,
    SMOKE_TASKS,
    FakeBackend,
    assert_same_as,
    baseline_run,
    qcli,
    start,
    subprocess_env,
)

from qwen3vl_eval.errors import InputError, TaskError
from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.distributed import Dist, from_env
from qwen3vl_eval.eval.runner import run_task
from qwen3vl_eval.eval.sample_log import merge_logs, rank_logs, read_records
from qwen3vl_eval.eval.task import load_registry

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "qwen3vl_eval"]


def test_two_ranks_give_the_single_process_results(tmp_path_factory, tmp_path):
    base = baseline_run(tmp_path_factory)
    out = tmp_path / "dp"
    r = subprocess.run([*TORCHRUN, *SMOKE_RUN, "--output", str(out)], capture_output=True, text=True, timeout=300,
                       env=subprocess_env())
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_as(base, out)
    for t in SMOKE_TASKS:
        res = json.loads((out / t / "results.json").read_text())
        assert res["throughput"]["ranks"] == 2 and res["config"]["world_size"] == 2
        assert res["throughput"]["samples"] == 2  # both ranks' samples counted
    assert r.stdout.count("results in") == 1  # only rank 0 prints the summary


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in sessions of their own)."""
    parents: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def logged_ids(out) -> int:
    """Distinct sample ids logged per task (samples.jsonl and rank logs together), summed over tasks. Unlike a
    line count this never goes down or counts twice while rank 0 merges (merged file written, rank logs not yet
    deleted)."""
    total = 0
    for t in SMOKE_TASKS:
        ids = set()
        for p in [out / t / "samples.jsonl", *rank_logs(out / t)] if (out / t).is_dir() else []:
            try:
                ids |= {r["id"] for r in read_records(p)}
            except (FileNotFoundError, TaskError):  # renamed by a merge meanwhile / a line being written
                pass
        total += len(ids)
    return total


def test_killed_two_rank_run_resumes_with_one_process(tmp_path_factory, tmp_path):
    """The kill point is a state, not a time: once 3 distinct samples are logged every process is frozen
    (SIGSTOP, workers first), the frozen state is checked, then everything is SIGKILLed."""
    base = baseline_run(tmp_path_factory)
    out = tmp_path / "dp_killed"
    p = start([*TORCHRUN, *SMOKE_RUN, "--output", str(out)])
    frozen = []
    try:
        deadline = time.monotonic() + 240
        while logged_ids(out) < 3:
            assert p.poll() is None, f"run ended (rc {p.returncode}) before it could be interrupted"
            assert time.monotonic() < deadline, "no samples logged in time"
            time.sleep(0.005)
        for pid in [*descendants(p.pid), p.pid]:  # freeze: nothing moves while the state is inspected
            try:
                os.kill(pid, signal.SIGSTOP)
                frozen.append(pid)
            except ProcessLookupError:
                pass
        n_logged = logged_ids(out)
        unfinished = [t for t in SMOKE_TASKS if not (out / t / "results.json").is_file()]
        left = [q for t in SMOKE_TASKS for q in rank_logs(out / t)]
    finally:
        for pid in [*descendants(p.pid), p.pid]:  # the workers first, as a crashed node would
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait(timeout=30)
    assert n_logged >= 3 and logged_ids(out) == n_logged
    assert unfinished, "killed after the run had finished"
    if left:  # a write torn by the kill
        with open(left[-1], "ab") as f:
            f.write(b'{"id": "0", "predic')
    r = qcli(*SMOKE_RUN, "--output", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert_same_as(base, out)


# ---------------------------------------------------------------- in process

def test_round_robin_shards_partition_in_order():
    items = list(range(11))
    shards = [Dist(r, 3).shard(items) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(shards, [])) == items
    assert Dist().shard(items) == items


def test_merge_orders_dedups_repairs_and_removes_rank_logs(tmp_path):
    spec = load_registry()["synth_text"]
    samples = load_samples(spec)  # ids "0".."4"
    rec = lambda i: json.dumps({"id": i, "prediction": "A"}) + "\n"  # noqa: E731
    (tmp_path / "samples.jsonl").write_text(rec("2"))
    (tmp_path / "samples.rank0.jsonl").write_text(rec("0") + rec("4") + '{"id": "x", "pre')
    (tmp_path / "samples.rank1.jsonl").write_text(rec("3") + rec("2") + rec("1"))
    (tmp_path / "samples.rank10.jsonl").write_text(rec("extra"))
    assert [p.name for p in rank_logs(tmp_path)] == ["samples.rank0.jsonl", "samples.rank1.jsonl",
                                                      "samples.rank10.jsonl"]
    merged = merge_logs(tmp_path, samples)
    assert [r["id"] for r in merged] == ["0", "1", "2", "3", "4", "extra"]
    assert [r["id"] for r in read_records(tmp_path / "samples.jsonl")] == ["0", "1", "2", "3", "4", "extra"]
    assert not rank_logs(tmp_path)


def test_leftover_rank_logs_need_resume_and_are_not_redone(tmp_path):
    spec = load_registry()["synth_text"]
    samples = load_samples(spec)
    from qwen3vl_eval.eval.results import score_sample

    done = score_sample(spec, samples[1], "B")
    (tmp_path / "samples.rank1.jsonl").write_text(json.dumps(done) + "\n")

    params = SimpleNamespace(max_new_tokens=2)
    with pytest.raises(TaskError, match="--resume"):
        run_task(spec, samples, FakeBackend(), tmp_path, params)
    backend = FakeBackend()
    res = run_task(spec, samples, backend, tmp_path, params, resume=True)
    assert len(backend.asked) == 4 and res["n_samples"] == 5 and res["throughput"]["resumed_from"] == 1
    assert [r["id"] for r in read_records(tmp_path / "samples.jsonl")] == ["0", "1", "2", "3", "4"]


def test_rank_devices(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    two = Dist(1, 2, 1)
    assert two.device("auto") == "cpu" and two.device("cpu") == "cpu"
    assert Dist().device("cuda:3") == "cuda:3"  # a single process keeps what it is given
    with pytest.raises(InputError, match="cuda:LOCAL_RANK"):
        two.device("cuda:0")
    with pytest.raises(InputError, match="not available"):
        two.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert two.device("auto") == "cuda:1" and two.device("cuda") == "cuda:1"
    with pytest.raises(InputError, match="LOCAL_RANK 2"):
        Dist(2, 3, 2).device("cuda")


def test_environment_without_torchrun_is_a_single_process(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    ctx = from_env()
    assert ctx == Dist() and not ctx.enabled and ctx.is_main
    assert ctx.broadcast("x") == "x" and ctx.gather(1) == [1]
    ctx.barrier()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(InputError, match="RANK=5"):
        from_env()
