"""Shared test helpers: the CLI in process and as a subprocess, clean-error checks, small media, a served
model, oracle predictions, the smoke-run checks of the reliability tests and the fake backends.

Fixtures are in `conftest.py`; everything here is a plain function or class, imported by name."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import httpx
import numpy as np
import pytest
import uvicorn
from typer.testing import CliRunner, Result

from qwen3vl_eval.backends.base import Reply
from qwen3vl_eval.cli import app
from qwen3vl_eval.eval.oracle import oracle_prediction  # noqa: F401 (tests import it from here)
from qwen3vl_eval.eval.runner import BatchOutOfMemory
from qwen3vl_eval.eval.sample_log import read_records
from qwen3vl_eval.processor.chat import split_reasoning
from qwen3vl_eval.runtime.timing import Timings

DATA = Path(__file__).parent / "data"
# --data of each real task's fixture (folder layouts as downloaded from the Hub, a bare parquet, a JSONL)
FIXTURES = {
    "docvqa_val": DATA / "docvqa", "chartqa_test": DATA / "chartqa",
    "textvqa_val": DATA / "textvqa" / "validation.parquet", "mmmu_val": DATA / "mmmu",
    "videomme": DATA / "videomme", "charades_sta": DATA / "charades_sta", "refcoco_val": DATA / "refcoco",
    "refcoco_testA": DATA / "refcoco", "refcoco_testB": DATA / "refcoco", "mmlu": DATA / "mmlu",
    "gsm8k": DATA / "gsm8k" / "test.jsonl",
}
REAL = ["docvqa_val", "chartqa_test", "textvqa_val", "mmmu_val", "videomme", "charades_sta", "refcoco_val",
        "refcoco_testA", "refcoco_testB", "mmlu", "gsm8k"]
SYNTH = ["synth_imageqa", "synth_videoqa", "synth_temporal_grounding", "synth_grounding", "synth_text"]


# ---------------------------------------------------------------- the CLI

def cli(*args: Any) -> Result:
    """`qwen3vl-eval ARGS` in process (arguments as their str)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean_error(r: Result, *needles: str, code: int = 2) -> str:
    """Exit `code`, exactly one line on stderr starting `error:`, no traceback; returns that line."""
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == code, (r.exit_code, r.output)
    assert "Traceback" not in r.output
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for n in needles:
        assert n in err, (n, err)
    return err


def subprocess_env() -> dict[str, str]:
    """The environment of CLI subprocesses: one thread each, so every process (torchrun's too) computes alike."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def qcli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m qwen3vl_eval ARGS` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "qwen3vl_eval", *args], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env())


def start(cmd: list[str], **kw: Any) -> subprocess.Popen:
    """A command in the background (stdout discarded, stderr kept)."""
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(), **kw)


# ---------------------------------------------------------------- files

def copy_tree(src: Path, dst: Path) -> Path:
    """A copy of the folder `src` (e.g. a checkpoint to edit) at `dst`."""
    shutil.copytree(src, dst)
    return dst


def write_video(path: Path, frames: int = 8, fps: int = 4, size: tuple[int, int] = (96, 64),
                codec: str = "libx264") -> Path:
    """A clip whose red channel steps with the frame index and whose left half is green; `size` is (W, H)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            arr = np.zeros((size[1], size[0], 3), np.uint8)
            arr[..., 0] = 30 * i % 256
            arr[:, : size[0] // 2, 1] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# ---------------------------------------------------------------- a served model

@contextmanager
def serve_process(model: str, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Iterator[str]:
    """Start `serve --model MODEL ARGS` on 127.0.0.1 and yield its base URL once /health answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "qwen3vl_eval", "serve", "--model", model, "--host", "127.0.0.1", "--port",
           str(port), *args]
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerThread:
    """uvicorn serving an app on a pre-bound loopback socket in a thread; stops on `stop()`."""

    def __init__(self, app) -> None:
        self.sock = free_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


# ---------------------------------------------------------------- answers

def write_preds(path: Path, preds: dict[str, str]) -> Path:
    """A predictions file (`score --predictions`): one `{"id", "prediction"}` line per entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": k, "prediction": v}) + "\n" for k, v in preds.items()))
    return path


def score(task: str, preds: Path, out: Path) -> dict:
    """`score --task T --predictions P --output O` (with the fixture data of a real task); its results.json, in
    O/T/ as `run --output O` lays a task out."""
    args = ["score", "--task", task, "--predictions", str(preds), "--output", str(out)]
    if task in FIXTURES:
        args += ["--data", str(FIXTURES[task])]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert (out / task / "report.md").is_file() and (out / task / "samples.jsonl").is_file()
    return json.loads((out / task / "results.json").read_text())


# ---------------------------------------------------------------- smoke runs (reliability, data parallel)

SMOKE_TASKS = ["synth_grounding", "synth_imageqa", "synth_temporal_grounding", "synth_text", "synth_videoqa"]
SMOKE_RUN = ["run", "--task", "smoke", "--model", "tiny", "--limit", "2", "--max-new-tokens", "4", "--device", "cpu"]


def baseline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted single-process `run` of SMOKE_RUN, made once per session (shared through the
    filesystem)."""
    out = tmp_path_factory.getbasetemp() / "baseline_run"
    marker = out.with_name("baseline_run.done")
    if not marker.is_file():
        r = qcli(*SMOKE_RUN, "--output", str(out))
        assert r.returncode == 0, r.stderr
        marker.touch()
    return out


def complete_lines(out: Path) -> int:
    """Samples logged (complete lines, each id once per task folder) in every samples*.jsonl under a run folder.
    Ids, not lines: while a data-parallel merge runs, a record is in the new samples.jsonl and in the rank log
    that the merge is about to delete, and would be counted twice."""
    seen: set[tuple[Path, str]] = set()
    for p in out.rglob("samples*.jsonl"):
        try:
            lines = p.read_bytes().split(b"\n")[:-1]
        except FileNotFoundError:  # renamed by a merge meanwhile
            continue
        for i, line in enumerate(lines):
            try:
                seen.add((p.parent, str(json.loads(line)["id"])))
            except (ValueError, KeyError, TypeError):
                seen.add((p, f"line {i}"))
    return len(seen)


def wait_for_lines(out: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Block until the run has logged at least `n` samples (and is still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"run ended (rc {proc.returncode}) before it could be interrupted"
        if complete_lines(out) >= n:
            return
        time.sleep(0.01)
    raise AssertionError("no samples logged in time")


def assert_same_as(base: Path, out: Path) -> None:
    """Byte-identical samples.jsonl and equal metrics for every task; every id once; no rank logs left."""
    for t in SMOKE_TASKS:
        got, want = out / t / "samples.jsonl", base / t / "samples.jsonl"
        ids = [r["id"] for r in read_records(got)]
        assert len(ids) == len(set(ids)) == 2, (t, ids)
        assert got.read_bytes() == want.read_bytes(), t
        r_got = json.loads((out / t / "results.json").read_text())
        r_want = json.loads((base / t / "results.json").read_text())
        assert r_got["metrics"] == r_want["metrics"] and r_got["n_samples"] == r_want["n_samples"], t
        assert not list((out / t).glob("samples.rank*.jsonl")), t


# ---------------------------------------------------------------- a backend in memory

class Crash(BaseException):
    """A hard stop (like a kill) that the runner must not swallow."""


def prompt_text(conversation: list[dict]) -> str:
    """The last text item of a conversation's last message (the task prompt)."""
    return conversation[-1]["content"][-1]["text"]


class FakeBackend:
    """The backend contract (`backends.base.Backend`) without a model, for the runner's tests.

    Replies: `answer` (a string, a prompt -> reply table, or a function of the prompt), each with `token_ids` and
    `finish_reason`; `usage` tokens per reply instead (a server: no token ids, a request with a latency each).
    Failures, checked in this order on each call: `crash_on_call` (raise `Crash` from that call on), `fits`
    (a batch larger raises `oom()`), `reject(prompt)` (a message: raise ValueError with it). Slowness: `steps`
    decode steps of `step_s` seconds, each reported through `on_tokens`. Calls are recorded: `calls`, `sizes`,
    `asked` (the conversations), `done_steps`, `requests`."""

    name = "fake"

    def __init__(self, answer: str | dict[str, str] | Callable[[str], str] = "A", *,
                 token_ids: tuple[int, ...] = (1,), finish_reason: str = "stop", usage: int | None = None,
                 crash_on_call: int | None = None, fits: int | None = None,
                 oom: Callable[[], BaseException] = lambda: BatchOutOfMemory("too big"),
                 reject: Callable[[str], str | None] | None = None, steps: int = 0, step_s: float = 0.0,
                 info: dict[str, Any] | None = None) -> None:
        self.answer, self.token_ids, self.finish_reason, self.usage = answer, list(token_ids), finish_reason, usage
        self.crash_on_call, self.fits, self.oom, self.reject = crash_on_call, fits, oom, reject
        self.steps, self.step_s = steps, step_s
        self._info = dict(info or {})
        self.timings = Timings()
        self.calls, self.done_steps = 0, 0
        self.sizes: list[int] = []
        self.asked: list[list[dict]] = []
        self.requests: list[SimpleNamespace] = []

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def close(self) -> None:
        pass

    def _reply(self, prompt: str) -> str:
        if isinstance(self.answer, str):
            return self.answer
        return self.answer[prompt] if isinstance(self.answer, dict) else self.answer(prompt)

    def chat(self, conversations: list, params: Any = None, *, base_dir: Any = None,
             on_tokens: Callable[[int, list[int]], None] | None = None) -> list[Reply]:
        self.calls += 1
        self.sizes.append(len(conversations))
        self.asked.extend(conversations)
        if self.crash_on_call is not None and self.calls >= self.crash_on_call:
            raise Crash()
        if self.fits is not None and len(conversations) > self.fits:
            raise self.oom()
        prompts = [prompt_text(c) for c in conversations]
        for p in prompts:
            if self.reject is not None and (message := self.reject(p)):
                raise ValueError(message)
        for _ in range(self.steps):
            time.sleep(self.step_s)
            self.done_steps += 1
            if on_tokens is not None:
                for row in range(len(conversations)):
                    on_tokens(row, [1])
        replies = []
        for p in prompts:
            text = self._reply(p)
            ids = [] if self.usage is not None else list(self.token_ids)
            self.timings.generated_tokens += self.usage if self.usage is not None else len(ids)
            self.timings.decode += 0.001 * len(ids)
            if self.usage is not None:
                self.requests.append(SimpleNamespace(latency_s=0.01, error=None))
            replies.append(Reply(text, ids, self.finish_reason, *split_reasoning(text), prompt_tokens=len(p)))
        return replies


class OpaqueFakeBackend(FakeBackend):
    """A FakeBackend whose `chat` takes no `on_tokens`: it cannot be stopped mid-generation, only marked late."""

    def chat(self, conversations: list, params: Any = None, *, base_dir: Any = None) -> list[Reply]:  # type: ignore[override]
        return super().chat(conversations, params, base_dir=base_dir)
