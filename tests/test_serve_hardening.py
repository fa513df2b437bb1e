"""`serve` as an attacker sees it (issue #14), over HTTP against the real command on 127.0.0.1: media sources
(data: URIs by default; local files and remote URLs only when opted in, one error text for every refusal),
bounded requests (body, nesting, media count, pixels, max_tokens, context, queue, out-of-range numbers) and
cancellation when the client leaves. The remote fetcher's address, redirect, size and time checks are tested
in process against loopback servers with a narrowed address rule; no traffic leaves 127.0.0.0/8."""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from helpers import serve_process, write_video
from PIL import Image

from qwen3vl_eval.backends.media_policy import REFUSED, MediaPolicy, MediaRefused, public_address

REFUSAL = REFUSED.split("{")[0]  # "media source refused or unreadable (this server accepts data: URIs"
SERVE = ("--device", "cpu", "--dtype", "float32", "--log-level", "warning")


def _png(w: int = 64, h: int = 48) -> bytes:
    b = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(b, "PNG")
    return b.getvalue()


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _image(url: str) -> dict:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                        {"type": "text", "text": "What is it?"}]}


def post(url: str, body, timeout: float = 120, **kw) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(url + "/v1/chat/completions", content=content, timeout=timeout,
                      headers={"Content-Type": "application/json"}, **kw)


def refusal(r: httpx.Response) -> str:
    assert r.status_code == 400, (r.status_code, r.text)
    message = r.json()["error"]["message"]
    assert REFUSAL in message, message
    return message.split(": ", 1)[1]  # without the part's position


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A loopback HTTP server that records every request and answers by path: /img (a PNG), /big (2 MiB),
    /slow (3 s), /redirect?to=URL."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits.append(self.path)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.path.split("to=", 1)[1])
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(3)
        body = b"\0" * (2 << 20) if self.path == "/big" else _png()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:  # the fetcher stopped reading at its size cap
            pass

    def log_message(self, *args) -> None:
        pass


@contextmanager
def recorder(host: str = "127.0.0.1") -> Iterator[tuple[str, list[str]]]:
    handler = type("Handler", (_Recorder,), {"hits": []})
    srv = http.server.ThreadingHTTPServer((host, 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://{host}:{srv.server_address[1]}", handler.hits
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("serve_hardening")
    (d / "root").mkdir()
    (d / "root" / "cat.png").write_bytes(_png())
    (d / "outside.png").write_bytes(_png())
    write_video(d / "root" / "clip.mp4")
    os.symlink(d / "outside.png", d / "root" / "link.png")
    return d


# ---------------------------------------------------------------- default policy: data URIs only

def test_default_server_reads_no_file_and_fetches_no_url(files):
    with serve_process("tiny", *SERVE) as url, recorder() as (web, hits):
        ok = post(url, {"messages": [_image(_data_url(_png()))], "max_tokens": 2})
        assert ok.status_code == 200, ok.text
        sources = [str(files / "outside.png"), str(files / "root" / "cat.png"), "../../outside.png",
                   f"file://{files / 'outside.png'}", "/etc/passwd", "/no/such/file.png", f"{web}/img",
                   "http://localhost:1/x.png", "https://127.0.0.1:9/", "ftp://example.invalid/x.png", "~/x.png"]
        texts = {refusal(post(url, {"messages": [_image(s)], "max_tokens": 2})) for s in sources}
        items = [{"type": "image", "image": str(files / "outside.png")}, {"type": "image", "path": "/etc/passwd"},
                 {"type": "video", "video": str(files / "root" / "clip.mp4")}, {"type": "image", "url": web}]
        for item in items:
            texts.add(refusal(post(url, {"messages": [{"role": "user", "content": [item]}], "max_tokens": 2})))
        video = {"type": "video_url", "video_url": {"url": f"file://{files / 'root' / 'clip.mp4'}"}}
        texts.add(refusal(post(url, {"messages": [{"role": "user", "content": [video]}], "max_tokens": 2})))
    assert len(texts) == 1, texts  # one text: no existence oracle, no port scan
    assert hits == []  # nothing was fetched


def test_allowed_media_root_confines_local_files(files):
    root = files / "root"
    with serve_process("tiny", *SERVE, "--allowed-media-root", str(root)) as url:
        for good in (str(root / "cat.png"), "cat.png", f"file://{root / 'cat.png'}"):
            r = post(url, {"messages": [_image(good)], "max_tokens": 2})
            assert r.status_code == 200, (good, r.text)
        video = {"type": "video_url", "video_url": {"url": "clip.mp4"}}
        assert post(url, {"messages": [{"role": "user", "content": [video]}], "max_tokens": 2}).status_code == 200
        bad = [str(files / "outside.png"), "../outside.png", "link.png", "missing.png", "/etc/passwd",
               f"file://{files / 'outside.png'}", "http://127.0.0.1:9/x.png"]
        texts = {refusal(post(url, {"messages": [_image(b)], "max_tokens": 2})) for b in bad}
    assert len(texts) == 1, texts


def test_remote_media_refuses_loopback_private_and_link_local_after_resolution():
    with serve_process("tiny", *SERVE, "--allow-remote-media") as url, recorder() as (web, hits):
        port = web.rsplit(":", 1)[1]
        sources = [f"{web}/img", f"http://localhost:{port}/img", f"http://[::1]:{port}/img",
                   f"http://127.1:{port}/img", f"http://2130706433:{port}/img", "http://10.0.0.1/x.png",
                   "http://192.168.1.1/x.png", "http://169.254.169.254/latest/meta-data",
                   "http://[fe80::1]/x.png", "http://0.0.0.0:1/", "http://[::ffff:127.0.0.1]:1/",
                   f"{web}/redirect?to=http://127.0.0.1:{port}/img"]
        texts = {refusal(post(url, {"messages": [_image(s)], "max_tokens": 2})) for s in sources}
        assert post(url, {"messages": [_image(_data_url(_png()))], "max_tokens": 2}).status_code == 200
    assert len(texts) == 1, texts
    assert hits == []  # refused before connecting: no request reached the loopback server


def test_address_rule():
    for ip in ("127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "fe80::1",
               "0.0.0.0", "::ffff:10.0.0.1", "224.0.0.1", "100.64.0.1", "fc00::1", "255.255.255.255"):
        assert not public_address(ip), ip
    for ip in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert public_address(ip), ip  # judged only, never contacted


def _loopback_policy(**kw) -> MediaPolicy:
    """The fetcher with its address rule narrowed to 127.0.0.1 standing in for 'public' (127.0.0.2 then
    plays a private address), so its redirect, size and time checks run against loopback servers."""
    return MediaPolicy(allow_remote=True, address_ok=lambda ip: ip == "127.0.0.1", **kw)


def test_fetcher_rechecks_redirects_caps_size_and_time():
    with recorder() as (web, hits), recorder("127.0.0.2") as (private, private_hits):
        assert _loopback_policy().resolve(f"{web}/img") == _png()
        assert _loopback_policy().resolve(f"{web}/redirect?to={web}/img") == _png()
        with pytest.raises(MediaRefused):
            _loopback_policy().resolve(f"{web}/redirect?to={private}/img")
        assert private_hits == []  # the redirect target was checked before any connection
        with pytest.raises(MediaRefused):
            _loopback_policy(max_bytes=1 << 20).resolve(f"{web}/big")
        t0 = time.monotonic()
        with pytest.raises(MediaRefused):
            _loopback_policy(timeout_s=0.5).resolve(f"{web}/slow")
        assert time.monotonic() - t0 < 2.5
        with pytest.raises(MediaRefused):
            _loopback_policy().resolve(f"{web}/redirect?to=file:///etc/passwd")
        with pytest.raises(MediaRefused):
            MediaPolicy(allow_remote=True).resolve(f"{web}/img")  # the real rule: loopback refused
    assert [h.split("?")[0] for h in hits] == ["/img", "/redirect", "/img", "/redirect", "/big", "/slow",
                                               "/redirect"]


# ---------------------------------------------------------------- bounded requests

@pytest.fixture(scope="module")
def bounded() -> Iterator[str]:
    with serve_process("tiny", *SERVE, "--max-body-mb", "1", "--max-images", "2", "--max-videos", "1",
                       "--max-pixels-per-request", "40000", "--max-tokens", "64") as url:
        yield url


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"messages": HI, "seed": 10**30}, 400, "seed"),
    ({"messages": HI, "max_tokens": 10**30}, 400, "max_tokens"),
    ({"messages": HI, "max_tokens": 65}, 400, "limit of 64"),
    ({"messages": HI, "temperature": 1e308 * 10}, 400, "temperature"),
    ({"messages": HI, "top_p": 1e400}, 400, "top_p"),
    ({"messages": HI, "top_k": -5}, 400, "top_k"),
    ({"messages": HI, "presence_penalty": 1e30}, 400, "presence_penalty"),
    ({"messages": HI, "max_tokens": 2.5}, 400, "max_tokens"),
    ({"messages": [_image(_data_url(_png()))] * 3}, 400, "3 images"),
    ({"messages": [_image(_data_url(_png(640, 480)))]}, 400, "pixels"),
])
def test_out_of_range_requests_are_400(bounded, body, status, needle):
    r = post(bounded, body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"], r.text


def test_body_size_cap_announced_or_streamed(bounded):
    big = json.dumps({"messages": [{"role": "user", "content": "x" * (2 << 20)}]}).encode()
    assert post(bounded, big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for i in range(0, len(big), 1 << 16):
            yield big[i : i + (1 << 16)]

    r = httpx.post(bounded + "/v1/chat/completions", content=chunks(), timeout=60,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "byte limit" in r.json()["error"]["message"]


@pytest.mark.parametrize("depth", [65, 200_000])
def test_deep_json_body_is_one_400(bounded, depth):
    r = post(bounded, '{"messages": ' + "[" * depth + "]" * depth + "}")
    assert r.status_code == 400 and "nested deeper than" in r.json()["error"]["message"], r.text


def test_max_tokens_defaults_to_the_cap(bounded):
    r = post(bounded, {"messages": HI, "ignore_eos": True})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 64


# ---------------------------------------------------------------- context, queue, cancellation

@pytest.fixture(scope="module")
def single() -> Iterator[str]:
    with serve_process("tiny", *SERVE, "--max-queue", "1", "--max-batch-size", "1") as url:
        yield url


def _context(tiny: str = "tiny") -> int:
    from qwen3vl_eval.checkpoints.hub import resolve_model

    return json.loads((resolve_model(tiny) / "config.json").read_text())["text_config"]["max_position_embeddings"]


def test_prompt_plus_max_tokens_beyond_the_context_is_400(single):
    ctx = _context()
    r = post(single, {"messages": HI, "max_tokens": ctx})
    assert r.status_code == 400 and f"context of {ctx} tokens" in r.json()["error"]["message"], r.text
    r = post(single, {"messages": [{"role": "user", "content": "hi " * (ctx + 10)}], "max_tokens": 1})
    assert r.status_code == 400 and "shorten the prompt" in r.json()["error"]["message"], r.text


def test_default_max_tokens_fits_the_context(single):
    ctx = _context()
    prompt = lambda k: post(single, {"messages": [{"role": "user", "content": "hi " * k}],  # noqa: E731
                                     "max_tokens": 1}).json()["usage"]["prompt_tokens"]
    p1, p2 = prompt(100), prompt(1100)
    per, base = (p2 - p1) / 1000, p1 - 100 * (p2 - p1) / 1000
    k = int((ctx - 60 - base) / per)  # a prompt that leaves about 60 tokens, fewer than the default 128
    r = post(single, {"messages": [{"role": "user", "content": "hi " * k}], "ignore_eos": True})
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] == ctx  # the default, lowered to the room left


def _health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=10).json()


def _until(cond, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _long_request(url: str, timeout: float) -> threading.Thread:
    body = {"messages": HI, "max_tokens": _context() - 100, "ignore_eos": True}

    def go() -> None:
        try:
            post(url, body, timeout=timeout)
        except httpx.TimeoutException:
            pass  # the client leaves

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_disconnect_cancels_a_running_generation(single):
    before = _health(single)["cancelled"]
    client = _long_request(single, timeout=3)
    _until(lambda: _health(single)["running"] == 1)
    client.join(60)
    _until(lambda: _health(single)["cancelled"] == before + 1 and _health(single)["running"] == 0)
    t0 = time.monotonic()
    r = post(single, {"messages": HI, "max_tokens": 2})
    assert r.status_code == 200 and time.monotonic() - t0 < 30  # the worker is free again


def test_full_queue_is_429_and_queued_requests_are_dropped_when_their_client_leaves(single):
    before = _health(single)["cancelled"]
    running = _long_request(single, timeout=5)
    _until(lambda: _health(single)["running"] == 1)
    queued = _long_request(single, timeout=2.5)
    _until(lambda: _health(single)["queued"] == 1)
    r = post(single, {"messages": HI, "max_tokens": 2})
    assert r.status_code == 429 and r.headers.get("retry-after") == "1", r.text
    assert r.json()["error"]["type"] == "rate_limit_error"
    queued.join(60)
    running.join(60)
    _until(lambda: _health(single)["cancelled"] == before + 2 and _health(single)["queued"] == 0)
    assert post(single, {"messages": HI, "max_tokens": 2}).status_code == 200
