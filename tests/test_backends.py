"""Backends: the OpenAI client's retries, backoff, timeouts and secrecy against a scripted loopback fake server;
request/response mapping; `make_backend`; and (marker `golden`, transformers needed) hf greedy == native greedy."""

from __future__ import annotations

import importlib.util
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from helpers import write_video
from PIL import Image

from qwen3vl_eval.backends import make_backend
from qwen3vl_eval.backends import openai as oa
from qwen3vl_eval.backends.native import Engine
from qwen3vl_eval.backends.openai import BackendError, OpenAIBackend, reply_from_response, request_body
from qwen3vl_eval.backends.serve import parse_params
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.sampling import GenerationParams

KEY_ENV = "QWEN3VL_TEST_FAKE_KEY"
KEY = "sk-fake-0123456789abcdef"
HAVE_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


def ok_body(text: str = "hello", prompt: int = 5, completion: int = 2) -> dict:
    return {"id": "x", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


class FakeServer:
    """A loopback HTTP server answering each POST with the next scripted action: `(status, headers, body)`,
    `("sleep", seconds)` (then a 200) or `("close",)` (drop the connection). Once the script is used up it
    answers 200. Records each request's headers and body."""

    def __init__(self) -> None:
        self.script: list[tuple] = []
        self.seen: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, status: int, headers: dict, body: dict | str) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

            def do_GET(self) -> None:
                self._reply(200, {}, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.seen.append({"headers": dict(self.headers), "body": json.loads(body or b"{}")})
                action = fake.script.pop(0) if fake.script else (200, {}, ok_body())
                if action[0] == "sleep":
                    time.sleep(action[1])
                    action = (200, {}, ok_body("late"))
                if action[0] == "close":
                    self.close_connection = True
                    return
                self._reply(*action)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    srv = FakeServer()
    yield srv
    srv.stop()


def client(fake: FakeServer, **kw) -> OpenAIBackend:
    kw = {"served_model_name": "fake-model", "timeout": 5, "retries": 3, "backoff": 0.01, "max_backoff": 0.2,
          **kw}
    return OpenAIBackend(fake.url, **kw)


CONV = [{"role": "user", "content": "hi"}]


def test_retry_on_429_honours_retry_after(fake: FakeServer) -> None:
    fake.script = [(429, {"Retry-After": "0.3"}, {"error": {"message": "slow down"}})]
    be = client(fake, backoff=30, max_backoff=30)  # a backoff of 30 s would time the test out: Retry-After wins
    t0 = time.perf_counter()
    [reply] = be.chat([CONV])
    elapsed = time.perf_counter() - t0
    assert reply.text == "hello" and reply.prompt_tokens == 5
    assert 0.3 <= elapsed < 5
    assert len(fake.seen) == 2 and be.requests[-1].attempts == 2 and be.timings.extra["retries"] == 1
    assert be.timings.generated_tokens == 2 and be.requests[-1].completion_tokens == 2


def test_retry_on_500_then_ok(fake: FakeServer) -> None:
    fake.script = [(500, {}, {"error": {"message": "boom"}}), (503, {}, "upstream down")]
    [reply] = client(fake).chat([CONV])
    assert reply.text == "hello" and len(fake.seen) == 3


def test_timeout_then_ok(fake: FakeServer) -> None:
    fake.script = [("sleep", 1.5)]
    be = client(fake, timeout=0.4)
    t0 = time.perf_counter()
    [reply] = be.chat([CONV])
    assert reply.text == "hello" and time.perf_counter() - t0 < 1.4  # the retry did not wait for the slow one
    assert be.requests[-1].attempts == 2


def test_dropped_connection_and_refused_connection(fake: FakeServer) -> None:
    fake.script = [("close",)]
    assert client(fake).chat([CONV])[0].text == "hello"
    closed = FakeServer()
    url = closed.url
    closed.stop()
    be = OpenAIBackend(url, served_model_name="m", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(BackendError, match="after 2 attempt"):
        be.chat([CONV])


def test_retries_run_out_with_exponential_backoff(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(oa.time, "sleep", sleeps.append)
    fake.script = [(502, {}, "bad gateway")] * 4
    be = client(fake, retries=3, backoff=1.0, max_backoff=100)
    with pytest.raises(BackendError, match="HTTP 502.*after 4 attempt"):
        be.chat([CONV])
    assert len(fake.seen) == 4 and len(sleeps) == 3
    for k, s in enumerate(sleeps):  # base * 2^k with jitter in [0.5, 1.5)
        assert 0.5 * 2 ** k <= s < 1.5 * 2 ** k
    assert be.requests[-1].error and be.latency() == {"n": 0}


def test_client_errors_are_not_retried(fake: FakeServer) -> None:
    fake.script = [(400, {}, {"error": {"message": "image too large", "type": "invalid_request_error"}})]
    with pytest.raises(InputError, match="HTTP 400: image too large"):
        client(fake).chat([CONV])
    assert len(fake.seen) == 1


def test_api_key_sent_never_recorded(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    be = OpenAIBackend(fake.url + "/v1/", api_key_env=KEY_ENV, retries=0)
    be.chat([CONV, CONV])
    assert all(s["headers"]["Authorization"] == f"Bearer {KEY}" for s in fake.seen)
    assert be.info()["model"] == "fake-model"  # from GET /v1/models
    for shown in (repr(be), json.dumps(be.info()), repr(be.requests), json.dumps(be.timings.as_dict())):
        assert KEY not in shown
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(InputError, match=KEY_ENV):
        OpenAIBackend(fake.url, api_key_env=KEY_ENV)


def test_concurrent_requests_keep_order(fake: FakeServer) -> None:
    be = client(fake, concurrency=4)
    replies = be.chat([[{"role": "user", "content": f"q{i}"}] for i in range(6)])
    assert len(replies) == 6 and len(fake.seen) == 6
    assert sorted(s["body"]["messages"][0]["content"] for s in fake.seen) == [f"q{i}" for i in range(6)]


def test_request_body_is_explicit_and_round_trips(fake: FakeServer, tmp_path: Path) -> None:
    params = GenerationParams(max_new_tokens=7, temperature=0.7, top_p=0.8, top_k=0, presence_penalty=1.5,
                              repetition_penalty=1.05, seed=3407, stop=("\n\n",), ignore_eos=True)
    body = request_body([], params, "m")
    assert body["top_k"] == -1 and body["max_tokens"] == 7 and body["stop"] == ["\n\n"] and body["ignore_eos"]
    defaults = GenerationParams(temperature=0.1, top_k=20, eos_token_ids=(1, 2))
    assert parse_params(body, defaults) == GenerationParams(**{**params.__dict__, "eos_token_ids": (1, 2)})
    # greedy by default, images as data URLs of their bytes, PIL images as PNG
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(tmp_path / "a.jpg")
    conv = [{"role": "user", "content": [{"type": "image", "image": str(tmp_path / "a.jpg"), "max_pixels": 4096},
                                         {"type": "image", "image": Image.new("RGB", (4, 4))},
                                         {"type": "image_url", "image_url": {"url": "http://example.invalid/x.png"}},
                                         {"type": "text", "text": "?"}]}]
    client(fake).chat([conv])
    sent = fake.seen[-1]["body"]
    assert sent["temperature"] == 0.0 and sent["max_tokens"] == 128
    parts = sent["messages"][0]["content"]
    assert parts[0]["image_url"]["url"].startswith("data:image/jpeg;base64,") and parts[0]["max_pixels"] == 4096
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2]["image_url"]["url"] == "http://example.invalid/x.png"  # passed through, not fetched here


def test_reasoning_content_is_joined() -> None:
    body = ok_body("42")
    body["choices"][0]["message"]["reasoning_content"] = "think hard"
    reply = reply_from_response(body)
    assert reply.reasoning == "think hard" and reply.answer == "42" and "</think>" in reply.text
    with pytest.raises(BackendError):
        reply_from_response({"nope": 1})


def test_make_backend(tiny_ckpt: Path, fake: FakeServer) -> None:
    with pytest.raises(InputError, match="expected one of native, hf, openai"):
        make_backend("vllm")
    engine = make_backend("native", model=tiny_ckpt, device="cpu", dtype="float32", base_url=None)
    assert isinstance(engine, Engine)
    with pytest.raises(InputError, match="--base-url: not an option of the native backend"):
        make_backend("native", model=tiny_ckpt, base_url="http://127.0.0.1:1")
    be = make_backend("openai", base_url=fake.url, model="served", device="auto", dtype="auto",
                      video_prompt="trained", concurrency=2)
    assert isinstance(be, OpenAIBackend) and be.info()["model"] == "served" and be.concurrency == 2
    with pytest.raises(InputError, match="--device"):
        make_backend("openai", base_url=fake.url, device="cuda")
    with pytest.raises(InputError, match="video_mode"):
        make_backend("openai", base_url=fake.url, video_mode="gif")


@pytest.mark.skipif(HAVE_TRANSFORMERS, reason="checks the message shown when transformers is missing")
def test_hf_backend_without_transformers(tiny_ckpt: Path) -> None:
    from qwen3vl_eval.backends import GOLDEN_HINT

    with pytest.raises(InputError, match=re.escape(GOLDEN_HINT)):
        make_backend("hf", model=tiny_ckpt, device="cpu")


# ------------------------------------------------------------------------------------------------ golden


@pytest.mark.golden
@pytest.mark.skipif(not HAVE_TRANSFORMERS, reason="needs transformers (the golden extra)")
def test_hf_greedy_equals_native(tiny_ckpt: Path, tmp_path: Path) -> None:
    """transformers' model and processor vs ours, fp32 CPU: identical greedy tokens for text, images and a
    video (native with the transformers5 video layout)."""
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(tmp_path / "n.png")
    write_video(tmp_path / "v.mp4", codec="mpeg4")
    convs = [
        [{"role": "user", "content": "Hello there."}],
        [{"role": "user", "content": [{"type": "image", "image": str(tmp_path / "n.png")},
                                      {"type": "text", "text": "Describe it."}]}],
        [{"role": "user", "content": [{"type": "text", "text": "Compare"},
                                      {"type": "image", "image": Image.new("RGB", (64, 96), (250, 10, 10))},
                                      {"type": "text", "text": "please."}]}],
        [{"role": "user", "content": [{"type": "video", "video": str(tmp_path / "v.mp4")},
                                      {"type": "text", "text": "What happens?"}]}],
    ]
    params = GenerationParams(max_new_tokens=8, temperature=0.0, ignore_eos=True)
    hf = make_backend("hf", model=tiny_ckpt, device="cpu", dtype="float32")
    native = Engine(tiny_ckpt, device="cpu", dtype="float32", video_prompt="transformers5")
    got, want = hf.chat(convs, params), native.chat(convs, params)
    assert [r.token_ids for r in got] == [r.token_ids for r in want]
    assert [r.text for r in got] == [r.text for r in want]
    assert [r.prompt_tokens for r in got] == [r.prompt_tokens for r in want]
    assert hf.info()["backend"] == "hf" and "transformers" in hf.info()["versions"]
