"""`run --backend native|hf|openai`: the openai backend against `qwen3vl-eval serve` (a real subprocess on
loopback) gives the native predictions on the smoke suite; backend flags that cannot work are one-line usage
errors; token counts come from the backend's counter (servers return usage, not token ids)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import FakeBackend, assert_clean_error, cli, serve_process

from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.runner import run_task
from qwen3vl_eval.eval.sample_log import read_records
from qwen3vl_eval.eval.task import load_registry

KEY_ENV = "QWEN3VL_TEST_RUN_KEY"
KEY = "sk-run-test-0d15ea5e"
SMOKE = ["synth_imageqa", "synth_videoqa", "synth_temporal_grounding", "synth_grounding", "synth_text"]
COMMON = ["--task", "smoke", "--model", "tiny", "--limit", "2", "--max-new-tokens", "4"]


@pytest.fixture(scope="module")
def served(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[str]:
    """`qwen3vl-eval serve --model tiny` in a subprocess on a free loopback port, with an API key."""
    monkeypatch_module.setenv(KEY_ENV, KEY)
    with serve_process("tiny", "--api-key-env", KEY_ENV, "--device", "cpu", "--dtype", "float32",
                       "--served-model-name", "tiny", "--log-level", "warning") as url:
        yield url


def test_openai_backend_against_serve_gives_the_native_predictions(served: str, tmp_path: Path) -> None:
    native, remote = tmp_path / "native", tmp_path / "openai"
    r = cli("run", *COMMON, "--batch-size", "2", "--device", "cpu", "--dtype", "float32", "--output", str(native))
    assert r.exit_code == 0, r.output
    t0 = time.perf_counter()
    r = cli("run", *COMMON, "--backend", "openai", "--base-url", served + "/v1", "--api-key-env", KEY_ENV,
            "--served-model-name", "tiny", "--concurrency", "2", "--request-timeout", "60", "--retries", "0",
            "--video-mode", "url", "--output", str(remote))
    assert r.exit_code == 0, r.output
    assert time.perf_counter() - t0 < 120
    for task in SMOKE:
        a, b = read_records(native / task / "samples.jsonl"), read_records(remote / task / "samples.jsonl")
        assert [x["id"] for x in a] == [x["id"] for x in b]
        for x, y in zip(a, b):
            assert x["error"] is None and y["error"] is None, (task, x, y)
            assert (x["prediction"], x["scores"], x["generated_tokens"]) == \
                (y["prediction"], y["scores"], y["generated_tokens"]), task
        res_a = json.loads((native / task / "results.json").read_text())
        res_b = json.loads((remote / task / "results.json").read_text())
        assert res_a["metrics"] == res_b["metrics"], task
        assert res_b["throughput"]["generated_tokens"] == res_a["throughput"]["generated_tokens"] > 0
        assert res_b["throughput"]["requests"]["n"] == 2
        cfg = res_b["config"]
        assert cfg["backend"] == "openai" and cfg["batch_size"] == 2  # --batch-size defaults to --concurrency
        assert cfg["backend_options"] == {"base_url": served + "/v1", "api_key_env": KEY_ENV,
                                          "served_model_name": "tiny", "concurrency": 2, "timeout": 60.0,
                                          "retries": 0, "video_mode": "url"}
        info = res_b["model_info"]
        assert info["backend"] == "openai" and info["model"] == "tiny" and info["video_mode"] == "url"
        assert res_a["config"]["backend"] == "native" and res_a["config"]["backend_options"] == {}
        for f in (remote / task).rglob("*"):  # the key is never written anywhere (report.html and media too)
            assert not f.is_file() or KEY.encode() not in f.read_bytes(), f


def test_credentials_in_the_base_url_are_not_recorded(tmp_path: Path) -> None:
    """A URL with user:password and a query string is recorded without them (the server is never reached:
    the first request fails, every sample is a logged error, exit 0)."""
    out = tmp_path / "o"
    r = cli("run", "--task", "synth_text", "--model", "tiny", "--limit", "1", "--backend", "openai",
            "--base-url", "http://user:s3cret@127.0.0.1:9/v1?key=s3cret", "--retries", "0",
            "--request-timeout", "2", "--output", str(out))
    assert r.exit_code == 0, r.output
    text = (out / "synth_text" / "results.json").read_text()
    assert "s3cret" not in text and "s3cret" not in (out / "synth_text" / "samples.jsonl").read_text()
    assert json.loads(text)["config"]["backend_options"]["base_url"] == "http://127.0.0.1:9/v1"
    assert read_records(out / "synth_text" / "samples.jsonl")[0]["error"]


@pytest.mark.parametrize("extra,needles", [
    (["--base-url", "http://127.0.0.1:8000/v1"], ["--base-url", "only with --backend openai"]),
    (["--backend", "native", "--concurrency", "4", "--video-mode", "url"], ["--concurrency, --video-mode"]),
    (["--backend", "hf", "--api-key-env", "X"], ["--api-key-env", "only with --backend openai"]),
    (["--backend", "openai"], ["--backend openai needs --base-url"]),
    (["--backend", "openai", "--base-url", "http://h/v1", "--device", "cpu"], ["--device"]),
    (["--backend", "openai", "--base-url", "http://h/v1", "--video-prompt", "transformers5"], ["--video-prompt"]),
    (["--backend", "openai", "--base-url", "http://h/v1", "--video-mode", "both"], ["--video-mode both"]),
    (["--backend", "openai", "--base-url", "http://h/v1", "--concurrency", "0"], ["--concurrency 0"]),
    (["--backend", "openai", "--base-url", "http://h/v1", "--request-timeout", "0"], ["--request-timeout 0"]),
    (["--backend", "openai", "--base-url", "http://h/v1", "--retries", "-1"], ["--retries -1"]),
    (["--backend", "openai", "--base-url", "http://h/v1", "--video-url-scheme", "file"], ["--video-mode url"]),
    (["--backend", "openai", "--base-url", "ftp://h/v1"], ["--base-url", "http(s)"]),
    (["--backend", "openai", "--base-url", "http://h/v1", "--api-key-env", "QWEN3VL_TEST_UNSET_KEY"],
     ["QWEN3VL_TEST_UNSET_KEY", "not set"]),
    (["--backend", "vllm"], ["--backend vllm", "native, hf, openai"]),
], ids=["base_url_native", "two_flags_native", "hf_key", "openai_no_url", "openai_device", "openai_video_prompt",
        "video_mode", "concurrency", "timeout", "retries", "url_scheme_frames", "not_http", "key_unset", "unknown"])
def test_backend_flags_that_cannot_work_are_one_line_usage_errors(tmp_path: Path, extra, needles) -> None:
    os.environ.pop("QWEN3VL_TEST_UNSET_KEY", None)
    r = cli("run", "--task", "synth_text", "--model", "tiny", "--limit", "1", "--output", str(tmp_path / "o"),
            *extra)
    assert_clean_error(r, *needles)


@pytest.mark.parametrize("batch_size,per_sample", [(1, 3), (3, None)])
def test_generated_tokens_come_from_the_backend_counter(tmp_path: Path, batch_size: int, per_sample) -> None:
    """Throughput counts the backend's `timings.generated_tokens` delta, not len(token_ids) (0 for servers);
    per sample the count is known when the call held that sample alone, else null."""
    spec = load_registry()["synth_text"]
    samples = load_samples(spec)[:3]
    server = FakeBackend(usage=3, info={"backend": "fake-server"})  # like `OpenAIBackend`: usage, no token ids
    res = run_task(spec, samples, server, tmp_path, SimpleNamespace(max_new_tokens=4), batch_size=batch_size)
    assert res["throughput"]["generated_tokens"] == 9
    assert res["throughput"]["requests"]["n"] == 3
    assert [r["generated_tokens"] for r in read_records(tmp_path / "samples.jsonl")] == [per_sample] * 3
