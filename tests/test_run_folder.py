"""The run folder (issue #14): one writer at a time (a second `run`, `--resume` included, exits 2 naming the
holder), duplicates dropped on resume with a warning, a full or read-only `--output` one line with nothing
lost, results.json fsync'd with its folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import qcli, start, subprocess_env

from qwen3vl_eval.eval.rundir import LOCK_NAME, RunLock
from qwen3vl_eval.eval.runner import read_records

ROOT = Path(__file__).resolve().parents[1]
RUN = ["run", "--task", "synth_text", "--model", "tiny", "--limit", "3", "--max-new-tokens", "2", "--device", "cpu"]


def _one_line(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: "), err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("folder_baseline") / "run"
    r = qcli(*RUN, "--output", str(out))
    assert r.returncode == 0, r.stderr
    return out


def _same(base: Path, out: Path) -> None:
    got = (out / "synth_text" / "samples.jsonl").read_bytes()
    assert got == (base / "synth_text" / "samples.jsonl").read_bytes()
    metrics = lambda p: json.loads((p / "synth_text" / "results.json").read_text())["metrics"]  # noqa: E731
    assert metrics(out) == metrics(base)


# ---------------------------------------------------------------- one writer

@pytest.mark.parametrize("resume", [False, True])
def test_second_writer_exits_2_naming_the_holder(tmp_path, baseline, resume):
    out = tmp_path / "run"
    if resume:
        shutil.copytree(baseline, out)
    with RunLock(out):  # this test process holds the folder
        r = qcli(*RUN, "--output", str(out), *(["--resume"] if resume else []))
    _one_line(r, str(out), "another run is writing there", f"pid {os.getpid()} on {socket.gethostname()}")
    if resume:
        _same(baseline, out)  # untouched


def test_two_real_runs_on_one_folder_cannot_interleave(tmp_path, baseline):
    out = tmp_path / "run"
    first = start([sys.executable, "-m", "qwen3vl_eval", *RUN, "--output", str(out)])
    lock = out / LOCK_NAME
    deadline = time.monotonic() + 120
    while not (lock.is_file() and f'"pid": {first.pid}' in lock.read_text()):
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGSTOP)  # the holder frozen while it holds the lock: no race with its end
    try:
        for extra in ([], ["--resume"]):
            _one_line(qcli(*RUN, "--output", str(out), *extra), f"pid {first.pid}")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    _same(baseline, out)
    assert qcli(*RUN, "--output", str(out), "--resume").returncode == 0  # the lock went with its holder


def test_lock_is_released_when_the_holder_is_killed(tmp_path, baseline):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from qwen3vl_eval.eval.rundir import "
                               "RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); "
                               "time.sleep(600)", str(out)], stdout=subprocess.PIPE, text=True, env=subprocess_env())
    assert holder.stdout.readline().strip() == "held"
    _one_line(qcli(*RUN, "--output", str(out)), f"pid {holder.pid}")
    holder.kill()
    holder.wait()
    r = qcli(*RUN, "--output", str(out))
    assert r.returncode == 0, r.stderr
    _same(baseline, out)


# ---------------------------------------------------------------- resume

def test_resume_keeps_the_first_record_per_id_and_warns(tmp_path, baseline):
    out = tmp_path / "run"
    shutil.copytree(baseline, out)
    log = out / "synth_text" / "samples.jsonl"
    first = read_records(log)
    dup = dict(first[0], prediction="a later duplicate")
    with open(log, "a") as f:  # what two interleaved writers left before the lock existed
        f.write(json.dumps(dup) + "\n" + json.dumps(first[1]) + "\n")
    r = qcli(*RUN, "--output", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert "2 duplicate record(s); keeping the first record of each id" in r.stderr
    _same(baseline, out)


# ---------------------------------------------------------------- full or read-only --output

def test_output_on_a_full_device_is_one_line_and_nothing_is_lost(tmp_path, baseline):
    """ENOSPC from the kernel: the samples log is /dev/full (every write fails with 'No space left')."""
    out = tmp_path / "run"
    shutil.copytree(baseline, out)
    log = out / "synth_text" / "samples.jsonl"
    kept = read_records(log)[:1]
    log.write_text(json.dumps(kept[0]) + "\n")
    (out / "synth_text" / "results.json").unlink()
    os.rename(log, tmp_path / "kept.jsonl")
    os.symlink("/dev/full", log)
    r = qcli(*RUN, "--output", str(out), "--resume")
    _one_line(r, f"--output {out}: no space left; free space and rerun with --resume")
    log.unlink()
    os.rename(tmp_path / "kept.jsonl", log)
    r = qcli(*RUN, "--output", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    _same(baseline, out)


def _namespace_ok() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True).returncode == 0


SCRIPT = """
set -u
mount -t tmpfs -o size={size} tmpfs "$D"
{before}
"$PY" -m qwen3vl_eval {run} --output "$D/run" 2>"$T/first.err"; echo $? > "$T/first.rc"
{between}
"$PY" -m qwen3vl_eval {run} --output "$D/run" --resume 2>"$T/second.err"; echo $? > "$T/second.rc"
cp -r "$D/run" "$T/copy"
"""


def _in_namespace(tmp_path: Path, size: str, before: str, between: str) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = SCRIPT.format(size=size, before=before, between=between, run=" ".join(RUN))
    env = {**subprocess_env(), "D": str(mnt), "T": str(tmp_path), "PY": sys.executable, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env, capture_output=True, text=True,
                       timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not _namespace_ok(), reason="needs unshare and tmpfs mounts in a user namespace")
def test_output_on_a_full_tmpfs_then_resume_after_freeing_space(tmp_path, baseline):
    """A real full filesystem: a 1 MiB tmpfs filled up but for 8 KiB (two pages: the lock file and the samples
    log fit, results.json does not); the run fails with one line; after the filler is removed, --resume
    finishes with the uninterrupted run's samples."""
    fill = 'cat /dev/zero > "$D/filler" 2>/dev/null; truncate -s -8192 "$D/filler"'
    _in_namespace(tmp_path, "1m", before=fill, between='rm "$D/filler"')
    first = (tmp_path / "first.err").read_text().strip()
    assert (tmp_path / "first.rc").read_text().strip() == "2", first
    assert first.splitlines() == [f"error: --output {tmp_path / 'mnt' / 'run'}: no space left; free space and "
                                  "rerun with --resume"], first
    assert (tmp_path / "second.rc").read_text().strip() == "0", (tmp_path / "second.err").read_text()
    _same(baseline, tmp_path / "copy")


@pytest.mark.skipif(not _namespace_ok(), reason="needs unshare and tmpfs mounts in a user namespace")
def test_output_on_a_read_only_filesystem_is_one_line(tmp_path, baseline):
    _in_namespace(tmp_path, "1m", before='mkdir "$D/run"; mount -o remount,ro "$D"', between='mount -o remount,rw "$D"')
    first = (tmp_path / "first.err").read_text().strip()
    assert (tmp_path / "first.rc").read_text().strip() == "2", first
    assert first.splitlines() == [f"error: --output {tmp_path / 'mnt' / 'run'}: read-only file system; choose "
                                  "a writable --output (finished samples are kept; continue with --resume)"]
    assert (tmp_path / "second.rc").read_text().strip() == "0", (tmp_path / "second.err").read_text()
    _same(baseline, tmp_path / "copy")


# ---------------------------------------------------------------- durability

def test_results_json_is_fsynced_with_its_folder(tmp_path, monkeypatch):
    from qwen3vl_eval.eval.reports import write_outputs
    from qwen3vl_eval.report import files

    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(files.os, "fsync", spy)
    results = {"task": "t", "model": "m", "metrics": {}, "n_samples": 0, "n_errors": 0}
    monkeypatch.setattr("qwen3vl_eval.eval.reports.render_report", lambda results, records: "# t\n")
    write_outputs(tmp_path, results, [])
    assert synced[:2] == [str(tmp_path / "results.json.tmp"), str(tmp_path)]
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert not (tmp_path / "results.json.tmp").exists()
