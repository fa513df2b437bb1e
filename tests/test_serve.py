"""`qwen3vl-eval serve` and the OpenAI backend end to end on the tiny checkpoint, loopback only.

Exactness (greedy, fp32 CPU): text, images and videos sent as `video_url` give the native engine's replies token
for token; videos in frames mode give exactly the native replies to the same frames as images with their
`<t seconds>` parts (not the native video replies: the model sees image tokens)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import ServerThread, serve_process
from PIL import Image

from qwen3vl_eval.backends import make_backend
from qwen3vl_eval.backends.media_policy import MediaPolicy
from qwen3vl_eval.backends.native import Engine
from qwen3vl_eval.backends.openai import OpenAIBackend, to_openai_messages
from qwen3vl_eval.backends.serve import create_app, parse_messages
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.sampling import GenerationParams

KEY_ENV = "QWEN3VL_TEST_SERVE_KEY"
KEY = "sk-test-5f1c0ffee"
GREEDY = GenerationParams(max_new_tokens=10, temperature=0.0)




@pytest.fixture(scope="module")
def server(tiny_ckpt: Path, media: Path, monkeypatch_module: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    """The tiny model served with a key and micro-batching (up to 4 requests, 100 ms window); local media
    allowed under the test's media folder (for file:// video URLs)."""
    monkeypatch_module.setenv(KEY_ENV, KEY)
    engine = Engine(tiny_ckpt, device="cpu", dtype="float32")
    app = create_app(engine, model_name="tiny", api_key=KEY, max_batch_size=4, batch_wait_ms=100,
                     media=MediaPolicy(allowed_root=media))
    srv = ServerThread(app)
    srv.app = app
    yield srv
    srv.stop()


def backend(server: ServerThread, **kw) -> OpenAIBackend:
    kw.setdefault("api_key_env", KEY_ENV)
    kw.setdefault("timeout", 60)
    kw.setdefault("retries", 0)
    return OpenAIBackend(server.url, **kw)


def user(*items) -> list[dict]:
    return [{"role": "user", "content": list(items)}]


def text(t: str) -> dict:
    return {"type": "text", "text": t}


def same(a, b) -> None:
    assert [(r.text, r.token_ids, r.finish_reason, r.prompt_tokens) for r in a] == \
        [(r.text, r.token_ids, r.finish_reason, r.prompt_tokens) for r in b]


def test_text_and_images_match_native(server: ServerThread, engine: Engine, media: Path) -> None:
    convs = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there."}],
        user({"type": "image", "image": str(media / "green.png")}, text("What colour?")),
        user(text("Compare"), {"type": "image", "image": str(media / "noise.jpg"), "max_pixels": 64 * 64},
             text("with"), {"type": "image", "image": Image.open(media / "green.png").convert("RGBA")}),
    ]
    with backend(server, served_model_name="tiny") as be:
        replies = be.chat(convs, GREEDY)
        assert all(r.token_ids for r in replies)
        assert be.timings.generated_tokens == sum(len(r.token_ids) for r in replies)
        assert len(be.requests) == 3 and all(r.attempts == 1 and r.completion_tokens for r in be.requests)
    same(replies, engine.chat(convs, GREEDY))


@pytest.mark.parametrize("scheme", ["data", "file"])
def test_video_url_matches_native(server: ServerThread, engine: Engine, media: Path, scheme: str) -> None:
    convs = [user({"type": "video", "video": str(media / "clip.mp4")}, text("What happens?")),
             user({"type": "video", "video": str(media / "clip.mp4"), "fps": 1.0}, text("Now?"))]
    with backend(server, video_mode="url", video_url_scheme=scheme) as be:
        replies = be.chat(convs, GREEDY)
    same(replies, engine.chat(convs, GREEDY))


def test_video_frames_are_native_timestamps_and_exact_as_images(server: ServerThread, engine: Engine,
                                                                media: Path, tiny_ckpt: Path) -> None:
    conv = user({"type": "video", "video": str(media / "clip.mp4")}, text("What happens?"))
    messages = to_openai_messages(conv, video_mode="frames",
                                  video_settings=engine.processor.video_settings)
    parts = messages[0]["content"]
    stamps = [p["text"] for p in parts if p["type"] == "text"][:-1]
    batch = engine.processor([conv])
    assert stamps == [f"<{t:.1f} seconds>" for t in batch.video_timestamps[0]]
    n_frames = len(batch.video_frame_indices[0])
    assert sum(p["type"] == "image_url" for p in parts) == n_frames
    with backend(server, video_mode="frames", processor=tiny_ckpt) as be:
        replies = be.chat([conv], GREEDY)
    same(replies, engine.chat([parse_messages({"messages": messages})], GREEDY))


def test_micro_batching_keeps_greedy_replies(server: ServerThread, engine: Engine, media: Path) -> None:
    convs = [user(text(f"Count to {i}.")) for i in range(3)] + \
        [user({"type": "image", "image": str(media / "noise.jpg")}, text("Describe."))]
    before = list(server.app.state.worker.batches)
    with backend(server, concurrency=4) as be:
        replies = be.chat(convs, GREEDY)
    batches = server.app.state.worker.batches[len(before):]
    assert sum(batches) == 4 and max(batches) > 1  # the 100 ms window collects concurrent requests
    same(replies, [engine.chat([c], GREEDY)[0] for c in convs])


def test_auth_and_models(server: ServerThread) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.get(server.url + "/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(server.url + "/v1/models").status_code == 401
    r = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert [m["id"] for m in r.json()["data"]] == ["tiny"]
    r = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    data = r.json()
    assert r.status_code == 200 and data["object"] == "chat.completion"
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    assert data["choices"][0]["finish_reason"] in ("stop", "length")
    with backend(server) as be:  # model name from /v1/models; the key stays out of repr and info
        be.chat([user(text("hi"))], GenerationParams(max_new_tokens=2))
        assert be.info()["model"] == "tiny"
        assert KEY not in repr(be) and KEY not in json.dumps(be.info()) and KEY not in repr(be.requests)
    with pytest.raises(InputError, match="401"):
        backend(server, api_key_env=None).chat([user(text("hi"))])


@pytest.mark.parametrize("body, status, message", [
    ("{not json", 400, "not valid JSON"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, 400, "unsupported content part"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 400, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}, 400, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 0}, 400, "n: must be >= 1"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 17}, 400, "n: at most 16"),
    ({"messages": [{"role": "user", "content": "hi"}], "logit_bias": {"5": 3}}, 400, "logit_bias"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, 400, "stream"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 21, "logprobs": True}, 400, "at most 20"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}, 400, "needs logprobs"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": True, "prompt_logprobs": 1}, 400,
     "not available with stream"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/no/such.png"}}]}]},
     400, "media source refused or unreadable"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400, "url"),
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, 404, "not found"),
])
def test_bad_requests(server: ServerThread, body, status: int, message: str) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(server.url + "/v1/chat/completions", content=content,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == status
    err = r.json()["error"]
    assert message in err["message"] and "Traceback" not in r.text


def test_bad_media_through_backend_is_input_error(server: ServerThread, media: Path) -> None:
    (media / "broken.mp4").write_bytes(b"not a video")
    with backend(server, video_mode="url") as be, pytest.raises(InputError, match="HTTP 400.*cannot read video"):
        be.chat([user({"type": "video", "video": str(media / "broken.mp4")}, text("?"))], GREEDY)


def test_serve_command(tiny_ckpt: Path, engine: Engine) -> None:
    """The real command in a subprocess: loopback, random port, key from the environment; stopped at the end."""
    with serve_process(str(tiny_ckpt), "--api-key-env", KEY_ENV, "--device", "cpu", "--dtype", "float32",
                       "--served-model-name", "tiny", "--log-level", "warning", env={KEY_ENV: KEY}) as url:
        conv = user(text("Hello there."))
        assert httpx.post(url + "/v1/chat/completions", json={"messages": conv}).status_code == 401
        be = make_backend("openai", base_url=url, api_key_env=KEY_ENV, model="tiny", device="auto")
        same(be.chat([conv], GREEDY), engine.chat([conv], GREEDY))


def test_serve_command_errors(tiny_ckpt: Path) -> None:
    from typer.testing import CliRunner

    from qwen3vl_eval.cli import app

    os.environ.pop("QWEN3VL_TEST_UNSET", None)
    r = CliRunner().invoke(app, ["serve", "--model", str(tiny_ckpt), "--api-key-env", "QWEN3VL_TEST_UNSET"])
    assert r.exit_code == 2 and "QWEN3VL_TEST_UNSET" in r.output and "Traceback" not in r.output
