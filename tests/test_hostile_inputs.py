"""Hostile or broken inputs: each gives a clear error (exit 2, one line on stderr, no traceback) or a logged
sample error, never a traceback or a hang. reports/reliability.md lists every case."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import FakeBackend, assert_clean_error, cli
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from qwen3vl_eval.eval.adapters import Sample
from qwen3vl_eval.eval.runner import run_task
from qwen3vl_eval.eval.sample_log import read_records
from qwen3vl_eval.eval.synth import write_video
from qwen3vl_eval.eval.task import load_registry

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = load_registry()


# ---------------------------------------------------------------- media files

def _png(size=(64, 48)) -> bytes:
    b = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(b, "PNG")
    return b.getvalue()


def _jpeg() -> bytes:
    b = io.BytesIO()
    Image.effect_noise((64, 48), 50).convert("RGB").save(b, "JPEG")
    return b.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 20000) -> bytes:
    """A PNG whose header claims side x side pixels (400M by default) with almost no data: a decompression
    bomb's header, without the cost of compressing one."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


def _frames(n: int, size: int = 32) -> list[np.ndarray]:
    return [np.full((size, size, 3), (k * 29) % 255, np.uint8) for k in range(n)]


def _empty_video(path: Path, container: str) -> Path:
    """A container whose video stream got no frames: AVI keeps the empty stream (zero frames), mp4 drops it
    (no video stream at all)."""
    import av

    c = av.open(str(path), "w", format=container)
    s = c.add_stream("mpeg4", rate=4)
    s.width = s.height = 32
    s.pix_fmt = "yuv420p"
    c.start_encoding()
    c.close()
    return path


def absurd_duration(src: Path, dst: Path) -> Path:
    """A copy of an mp4 whose movie and track headers claim ~136 years (timescale 1) and whose frames each
    claim 2^31 time units, so the stream reports a frame rate of ~5e-10 fps."""
    data = bytearray(src.read_bytes())
    for box in (b"mvhd", b"mdhd"):
        i = data.index(box) + 4
        assert data[i] == 0  # version 0 boxes: 32-bit fields
        struct.pack_into(">II", data, i + 12, 1, 0xFFFFFFF0)
    i = data.index(b"stts") + 4
    for k in range(struct.unpack_from(">I", data, i + 4)[0]):
        count = struct.unpack_from(">I", data, i + 8 + 8 * k)[0]
        struct.pack_into(">II", data, i + 8 + 8 * k, count, 0x7FFFFFFF)
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def hostile_media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile_media")
    png, jpg = _png(), _jpeg()
    (d / "ok.png").write_bytes(png)
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (d / "garbage.png").write_bytes(os.urandom(300))
    (d / "empty.png").write_bytes(b"")
    (d / "bomb.png").write_bytes(bomb_png())
    write_video(d / "ok.mp4", _frames(8), fps=4)
    data = (d / "ok.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "garbage.mp4").write_bytes(os.urandom(2000))
    write_video(d / "one_frame.mp4", _frames(1), fps=4)
    _empty_video(d / "zero_frames.mp4", "avi")
    _empty_video(d / "no_stream.mp4", "mp4")
    absurd_duration(d / "ok.mp4", d / "absurd_duration.mp4")
    return d


def _messages(tmp_path: Path, obj, name: str = "m.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return p


def _user(kind: str, value: str, **opts) -> list[dict]:
    return [{"role": "user", "content": [{"type": kind, kind: value, **opts}, {"type": "text", "text": "hi"}]}]


@pytest.mark.parametrize("name,needle", [
    ("truncated.png", "truncated"), ("truncated.jpg", "truncated"), ("garbage.png", "cannot read image"),
    ("empty.png", "cannot read image")])
def test_corrupt_images_are_one_clear_error(tiny_ckpt, hostile_media, tmp_path, name, needle):
    m = _messages(tmp_path, _user("image", str(hostile_media / name)))
    assert_clean_error(cli("preprocess", "--model", str(tiny_ckpt), "--messages", str(m)), name, needle)


@pytest.mark.parametrize("name,needle", [
    ("truncated.mp4", "cannot read video"), ("garbage.mp4", "cannot read video"),
    ("zero_frames.mp4", "no decodable video frames"), ("no_stream.mp4", "no video stream"),
    ("one_frame.mp4", "1 frame(s); at least 2 are needed")])
def test_broken_videos_are_one_clear_error(tiny_ckpt, hostile_media, tmp_path, name, needle):
    m = _messages(tmp_path, _user("video", str(hostile_media / name)))
    assert_clean_error(cli("preprocess", "--model", str(tiny_ckpt), "--messages", str(m)), name, needle)


def test_video_claiming_an_absurd_duration_is_bounded(tiny_ckpt, hostile_media, tmp_path):
    """Headers claiming 136 years at 5e-10 fps: the work is bounded by the frames really there."""
    m = _messages(tmp_path, _user("video", str(hostile_media / "absurd_duration.mp4")))
    t0 = time.perf_counter()
    r = cli("preprocess", "--model", str(tiny_ckpt), "--messages", str(m))
    assert time.perf_counter() - t0 < 20
    if r.exit_code != 0:
        assert_clean_error(r, "absurd_duration.mp4")


def test_video_claiming_a_billion_frames_decodes_only_real_ones(tiny_ckpt, hostile_media, monkeypatch):
    """A header frame count of 1e9 (and a near-zero frame rate): sampling is clamped to max_frames and
    decoding stops at the real end of the stream, then resamples from the frames actually decoded."""
    from qwen3vl_eval.processor import Processor
    from qwen3vl_eval.processor import video as V

    processor = Processor.from_pretrained(tiny_ckpt)
    for fps in (24.0, 1e-9):
        monkeypatch.setattr(V, "_stream_info", lambda c, n, fps=fps: (10**9, fps))
        t0 = time.perf_counter()
        out = processor(_user("video", str(hostile_media / "ok.mp4")))
        assert time.perf_counter() - t0 < 10
        assert max(out.video_frame_indices[0]) <= 7  # the file has 8 frames


def test_errors_from_a_real_process_have_no_traceback(tiny_ckpt, hostile_media, tmp_path):
    """The same through `python -m qwen3vl_eval` in a subprocess (what a user sees)."""
    m = _messages(tmp_path, _user("video", str(hostile_media / "truncated.mp4")))
    r = subprocess.run([sys.executable, "-m", "qwen3vl_eval", "preprocess", "--model", str(tiny_ckpt),
                        "--messages", str(m)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "truncated.mp4" in r.stderr


# ---------------------------------------------------------------- messages files

BAD_MESSAGES = [
    (5, "expected a conversation"),
    ("hello", "expected a conversation"),
    ([], "expected a conversation"),
    ([5], "messages:"),
    ([{"role": "user", "content": "a"}, 5], "messages:"),
    ([{"role": 5, "content": "x"}], "role must be one of"),
    ([{"role": "user", "content": 5}], "content must be a string or a list"),
    ([{"role": "user", "content": {"type": "text", "text": "x"}}], "content must be a string or a list"),
    ([{"role": "user", "content": [5]}], "a content item must be an object"),
    ([{"role": "user", "content": [{"type": "audio", "audio": "a.wav"}]}], "unknown content type 'audio'"),
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "needs a string 'text'"),
    ([{"role": "user", "content": [{"type": "image", "image": 5}]}], "not an image"),
    ([{"role": "user", "content": [{"type": "image"}]}], "has none of the keys"),
    ([{"role": "user", "content": [{"type": "image", "image": "x.png", "min_pixels": "big"}]}],
     "min_pixels must be a positive number"),
    ([{"role": "user", "content": [{"type": "video", "video": "x.mp4", "fps": -1}]}], "fps must be a positive"),
    ([{"role": "user", "content": [{"type": "image", "image": "data:image/png;base64,!!"}]}], "invalid base64"),
    ([{"role": "user", "content": [{"type": "image", "image": "missing.png"}]}], "no such file"),
    ([[{"role": "user", "content": "a"}], {"role": "user", "content": "b"}], "mixes messages and conversations"),
    ([{"role": "user", "content": "<|image_pad|>"}], "placeholder"),
]


@pytest.mark.parametrize("messages,needle", BAD_MESSAGES, ids=[f"m{i}" for i in range(len(BAD_MESSAGES))])
def test_bad_messages_are_one_clear_error(tiny_ckpt, tmp_path, messages, needle):
    m = _messages(tmp_path, messages)
    assert_clean_error(cli("preprocess", "--model", str(tiny_ckpt), "--messages", str(m)), needle)


def test_messages_file_not_json_or_missing(tiny_ckpt, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe{[")
    assert_clean_error(cli("generate", "--model", str(tiny_ckpt), "--messages", str(bad)), "bad.json")
    assert_clean_error(cli("generate", "--model", str(tiny_ckpt), "--messages", str(tmp_path / "nope.json")),
                       "nope.json")


def test_processor_keeps_pils_decompression_bomb_guard(tiny_ckpt, tmp_path):
    """processor/image.py must not switch PIL's guard off; a bomb is a ProcessorError naming the item, decided
    from the header (PIL raises DecompressionBombError in Image.open, before decoding)."""
    import PIL.Image

    import qwen3vl_eval.processor  # noqa: F401 - importing it must leave the guard on
    assert PIL.Image.MAX_IMAGE_PIXELS is not None
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    m = _messages(tmp_path, _user("image", str(tmp_path / "bomb.png")))
    err = assert_clean_error(cli("preprocess", "--model", str(tiny_ckpt), "--messages", str(m)), "bomb")
    assert "bomb.png" in err and "item 0" in err


def test_bomb_limit_is_pils_refusal_threshold(tmp_path):
    """The limit is PIL's own refusal size (2 x MAX_IMAGE_PIXELS, where transformers refuses too): just over it
    is refused from the header; in the band where PIL only warns, the header check lets the image through
    and no warning escapes."""
    import warnings

    import PIL.Image

    from qwen3vl_eval.errors import ProcessorError
    from qwen3vl_eval.processor.image import _check_bomb, max_image_pixels

    assert max_image_pixels() == 2 * PIL.Image.MAX_IMAGE_PIXELS == 178_956_970
    side = int((2 * PIL.Image.MAX_IMAGE_PIXELS) ** 0.5) + 1
    with pytest.raises(ProcessorError, match="decompression bomb"):
        _check_bomb(side, side, "x.png")
    _check_bomb(10_000, 10_000, "x.png")  # 100 MP: over PIL's warning size, accepted
    from qwen3vl_eval.processor.image import decode_image
    from qwen3vl_eval.processor.media import resolve_source

    (tmp_path / "b.png").write_bytes(bomb_png(side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ProcessorError, match="decompression bomb"):
            decode_image(resolve_source(str(tmp_path / "b.png"), None))


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e308", "1e999"])
def test_non_finite_or_huge_video_fps_is_a_clear_error(tiny_ckpt, hostile_media, tmp_path, value):
    """fps: Infinity / NaN / 1e308 (all accepted by Python's json) must be a ProcessorError naming the
    option, not an OverflowError/ValueError traceback."""
    m = tmp_path / "m.json"
    path = json.dumps(str(hostile_media / "ok.mp4"))
    m.write_text(f'[{{"role": "user", "content": [{{"type": "video", "video": {path}, "fps": {value}}}]}}]')
    assert_clean_error(cli("preprocess", "--model", str(tiny_ckpt), "--messages", str(m)), "fps")


@pytest.mark.parametrize("opts,needle", [
    ({"min_frames": -1}, "min_frames must be an integer >= 0"),
    ({"max_frames": 0}, "max_frames must be an integer >= 1"),
    ({"max_frames": 2.5}, "max_frames must be an integer"),
    ({"min_frames": 8, "max_frames": 4}, "min_frames 8 is above max_frames 4"),
    ({"min_pixels": 200_000, "max_pixels": 100_000}, "min_pixels 200000 is above max_pixels 100000"),
    ({"max_pixels": float("nan")}, "max_pixels must be a finite number"),
], ids=["min_frames_negative", "max_frames_zero", "max_frames_fraction", "frames_min_above_max",
        "pixels_min_above_max", "pixels_nan"])
def test_video_frame_and_pixel_options_are_checked(tiny_ckpt, hostile_media, tmp_path, opts, needle):
    m = tmp_path / "m.json"
    m.write_text(json.dumps(_user("video", str(hostile_media / "ok.mp4"), **opts)))  # json writes NaN as NaN
    assert_clean_error(cli("preprocess", "--model", str(tiny_ckpt), "--messages", str(m)), needle, "item 0")


@pytest.mark.parametrize("kind,name", [("image", "ok.png"), ("video", "ok.mp4")])
def test_per_item_pixel_budget_cannot_blow_up_memory(tiny_ckpt, hostile_media, tmp_path, kind, name):
    """min_pixels: 1e12 on a 64x48 image asks for a 3 TB resize; it must be refused up front (a clear
    ProcessorError naming the option), not attempted (RuntimeError from the allocator before, or all the
    machine's memory for values that do fit, e.g. 1e9 -> 3 GB uint8 + 12 GB float32)."""
    m = _messages(tmp_path, _user(kind, str(hostile_media / name), min_pixels=10**12, max_pixels=10**12))
    assert_clean_error(cli("preprocess", "--model", str(tiny_ckpt), "--messages", str(m)), "pixels", name)
    m = _messages(tmp_path, _user(kind, str(hostile_media / name), min_pixels=10**9))
    assert_clean_error(cli("preprocess", "--model", str(tiny_ckpt), "--messages", str(m)), "min_pixels",
                       "pixel limit")
    m = _messages(tmp_path, _user(kind, str(hostile_media / name), min_pixels=5000, max_pixels=4000))
    assert_clean_error(cli("preprocess", "--model", str(tiny_ckpt), "--messages", str(m)),
                       "min_pixels 5000 is above max_pixels 4000")


@pytest.mark.parametrize("opts,needle", [({"min_pixels": 10**12}, "pixel limit"), ({"fps": 1e308}, "fps must be in"),
                                         ({"min_frames": 8, "max_frames": 4}, "min_frames 8 is above")])
def test_one_option_validator_for_every_path(media, opts, needle):
    """The processor, the openai backend's request builder and the server's request parser check per-item
    options with the same validator, before any media is read."""
    from qwen3vl_eval.backends.openai import to_openai_messages
    from qwen3vl_eval.backends.serve import RequestError, parse_messages
    from qwen3vl_eval.errors import ProcessorError
    from qwen3vl_eval.processor.messages import media_items

    kind = "image" if set(opts) == {"min_pixels"} else "video"
    conv = [{"role": "user", "content": [{"type": kind, kind: str(media / "nope"), **opts}]}]
    for check in (lambda: media_items(conv, 0), lambda: to_openai_messages(conv)):
        with pytest.raises(ProcessorError, match=needle):
            check()
    with pytest.raises(RequestError, match=needle):
        parse_messages({"messages": conv})


def test_pixel_budget_caps_allow_the_released_maxima():
    """The caps sit 4x above the released checkpoints' budgets, so every documented setting still works."""
    from qwen3vl_eval.processor.image import ImageSettings
    from qwen3vl_eval.processor.messages import MAX_IMAGE_PIXEL_BUDGET, MAX_VIDEO_PIXEL_BUDGET
    from qwen3vl_eval.processor.video import VideoSettings

    assert ImageSettings().with_overrides(max_pixels=16384 * 32 * 32).max_pixels == 16777216
    assert ImageSettings().with_overrides(max_pixels=MAX_IMAGE_PIXEL_BUDGET).max_pixels == 4 * 16777216
    whole_clip = {"size": {"longest_edge": MAX_VIDEO_PIXEL_BUDGET}}  # transformers' meaning (video_processor)
    assert VideoSettings().with_overrides(video_processor=whole_clip).max_pixels == 4 * 25165824
    # per-item budget keys are per frame (qwen-vl-utils): a frame may ask for the image cap
    assert VideoSettings().with_overrides(min_pixels=MAX_IMAGE_PIXEL_BUDGET).budget.min_pixels == 4 * 16777216
    assert VideoSettings().with_overrides(fps=1000, min_frames=0, max_frames=4).budget.fps == 1000.0
    # one bound alone may cross the checkpoint's other one (transformers follows max_pixels then)
    assert ImageSettings().with_overrides(max_pixels=96 * 96).max_pixels == 9216


# ---------------------------------------------------------------- task data through the runner

PARAMS = SimpleNamespace(max_new_tokens=4, temperature=0.0)


def test_broken_task_images_are_logged_sample_errors(hostile_media, tmp_path):
    spec = REGISTRY["synth_imageqa"]
    ok = Sample("ok", ["red"], "What color?", images=[{"bytes": (hostile_media / "ok.png").read_bytes(), "path": None}])
    bad = [Sample(n, ["red"], "What color?", images=[{"bytes": (hostile_media / n).read_bytes(), "path": None}])
           for n in ("truncated.png", "truncated.jpg", "garbage.png", "bomb.png")]
    res = run_task(spec, [ok, *bad], FakeBackend(), tmp_path, PARAMS, batch_size=5)
    recs = {r["id"]: r for r in read_records(tmp_path / "samples.jsonl")}
    assert res["n_samples"] == 5 and res["n_errors"] == 4
    assert recs["ok"]["error"] is None
    assert "truncated" in recs["truncated.png"]["error"] and "truncated" in recs["truncated.jpg"]["error"]
    assert "UnidentifiedImageError" in recs["garbage.png"]["error"]
    assert "decompression bomb" in recs["bomb.png"]["error"] or "DecompressionBomb" in recs["bomb.png"]["error"]


def test_task_video_paths_stay_inside_the_media_root(tmp_path):
    """Video names in task rows that climb out of --media-root (../, absolute, a symlink leaving the folder)
    are refused per sample (the runner logs the error); a name inside it and a symlinked video folder work."""
    from qwen3vl_eval.eval.data import load_samples

    root = tmp_path / "media"
    (root / "Charades_v1_480").mkdir(parents=True)
    write_video(root / "Charades_v1_480" / "inside.mp4", _frames(4), fps=2)
    write_video(tmp_path / "outside.mp4", _frames(4), fps=2)
    (root / "Charades_v1_480" / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    names = ["inside.mp4", "../../outside.mp4", str(tmp_path / "outside.mp4"), "../../../../etc/passwd",
             "sub/../../outside.mp4", "link.mp4"]
    rows = [{"video": v, "caption": "x", "timestamp": [0.0, 1.0]} for v in names]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = load_samples(REGISTRY["charades_sta"], str(data), media_root=root)
    assert samples[0].error is None and samples[0].videos == [str(root / "Charades_v1_480" / "inside.mp4")]
    for s in samples[1:]:
        assert s.error is not None and "escapes the media root" in s.error, (s.videos, s.error)
    # a media root whose video folder is a symlink to another disk is fine
    other = tmp_path / "disk2"
    other.mkdir()
    write_video(other / "inside.mp4", _frames(4), fps=2)
    root2 = tmp_path / "media2"
    root2.mkdir()
    (root2 / "Charades_v1_480").symlink_to(other)
    s = load_samples(REGISTRY["charades_sta"], str(data), media_root=root2)[0]
    assert s.error is None and s.videos[0].startswith(str(root2))


def test_escaping_task_videos_are_logged_sample_errors(tmp_path):
    """Through the runner: the escaping sample is a logged error, its batch-mate is answered."""
    from qwen3vl_eval.eval.data import load_samples

    root = tmp_path / "media"
    root.mkdir()
    write_video(root / "inside.mp4", _frames(4), fps=2)
    write_video(tmp_path / "outside.mp4", _frames(4), fps=2)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"video": v, "caption": "x", "timestamp": [0.0, 1.0]}) + "\n"
                            for v in ["inside.mp4", "../outside.mp4"]))
    spec = REGISTRY["charades_sta"]
    samples = load_samples(spec, str(data), media_root=root)
    res = run_task(spec, samples, FakeBackend(), tmp_path / "out", PARAMS, batch_size=2)
    recs = read_records(tmp_path / "out" / "samples.jsonl")
    assert res["n_errors"] == 1 and recs[0]["error"] is None
    assert "escapes the media root" in recs[1]["error"]


def test_task_image_paths_stay_inside_the_media_roots(tmp_path):
    """Image *paths* in task rows (HF usually embeds bytes) resolve against --media-root and the data's folder
    and may not leave them: the escaping samples are logged errors, the one inside is answered; refcoco, which
    reads the image size at load time, turns an escaping path into a sample error too."""
    from PIL import Image

    from qwen3vl_eval.eval.data import load_samples

    data_dir = tmp_path / "data"
    (data_dir / "imgs").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(data_dir / "imgs" / "in.png")
    Image.new("RGB", (40, 30), (10, 200, 10)).save(tmp_path / "outside.png")
    (data_dir / "imgs" / "link.png").symlink_to(tmp_path / "outside.png")
    paths = ["imgs/in.png", "../outside.png", str(tmp_path / "outside.png"), "imgs/link.png", "imgs/missing.png"]
    rows = [{"question_id": i, "question": "What?", "answers": ["red"] * 10, "image": {"bytes": None, "path": p}}
            for i, p in enumerate(paths)]
    data = data_dir / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = REGISTRY["textvqa_val"]
    res = run_task(spec, load_samples(spec, str(data)), FakeBackend(), tmp_path / "out", PARAMS, batch_size=5)
    recs = read_records(tmp_path / "out" / "samples.jsonl")
    assert res["n_errors"] == 4 and recs[0]["error"] is None
    assert all("escapes the media root" in r["error"] for r in recs[1:4]), [r["error"] for r in recs]
    assert "not found" in recs[4]["error"]
    refs = [{"question_id": i, "image": {"bytes": None, "path": p}, "bbox": [1, 1, 5, 5], "answer": ["a thing"]}
            for i, p in enumerate(paths[:2])]
    data.write_text("".join(json.dumps(r) + "\n" for r in refs))
    ok, bad = load_samples(REGISTRY["refcoco_val"], str(data))
    assert ok.error is None and ok.target["width"] == 40
    assert bad.error is not None and "escapes the media root" in bad.error


def test_broken_task_videos_are_logged_sample_errors(engine, hostile_media, tmp_path):
    """Videos reach the processor inside the backend; each broken one is its own logged error and its
    batch-mates are still answered."""
    spec = REGISTRY["synth_videoqa"]
    names = ["ok.mp4", "truncated.mp4", "garbage.mp4", "zero_frames.mp4", "one_frame.mp4", "absurd_duration.mp4"]
    samples = [Sample(n, "A", "What color?", choices=["red", "blue"], videos=[str(hostile_media / n)]) for n in names]
    from qwen3vl_eval.backends.native import GenerationParams

    res = run_task(spec, samples, engine, tmp_path, GenerationParams(max_new_tokens=2), batch_size=6)
    recs = {r["id"]: r for r in read_records(tmp_path / "samples.jsonl")}
    assert recs["ok.mp4"]["error"] is None and recs["ok.mp4"]["prediction"] is not None
    for n in ("truncated.mp4", "garbage.mp4", "zero_frames.mp4", "one_frame.mp4"):
        assert recs[n]["error"].startswith("ProcessorError") and n in recs[n]["error"], recs[n]
    assert res["n_samples"] == 6 and res["n_errors"] >= 4


# ---------------------------------------------------------------- golden files (parity)

GOLDEN = ROOT / "reference" / "golden"


def _golden_case(tmp_path: Path, edit) -> Path:
    case = Path(shutil.copytree(GOLDEN / "image", tmp_path / "case"))
    with safe_open(case / "golden.safetensors", framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    edit(tensors, meta)
    save_file(tensors, str(case / "golden.safetensors"), metadata=meta)
    return case


GOLDEN_EDITS = {
    "input_ids_float": (lambda t, m: t.update({"input.input_ids": t["input.input_ids"].float()}), "input.input_ids"),
    "input_ids_3d": (lambda t, m: t.update({"input.input_ids": t["input.input_ids"][None]}), "input.input_ids"),
    "pixel_values_int": (lambda t, m: t.update({"input.pixel_values": t["input.pixel_values"].long()}),
                         "input.pixel_values"),
    "grid_two_columns": (lambda t, m: t.update({"input.image_grid_thw": t["input.image_grid_thw"][:, :2]}),
                         "input.image_grid_thw"),
    "mask_wrong_shape": (lambda t, m: t.update({"input.attention_mask": t["input.attention_mask"][:, 1:]}),
                         "input.attention_mask"),
    "grid_without_pixels": (lambda t, m: t.pop("input.pixel_values"), "input.pixel_values"),
    "no_input_ids": (lambda t, m: t.pop("input.input_ids"), "input.input_ids"),
    "wrong_format": (lambda t, m: m.update({"format": "other/9"}), "format"),
}


@pytest.mark.parametrize("edit", list(GOLDEN_EDITS))
def test_malformed_golden_is_exit_2(tmp_path, edit):
    fn, needle = GOLDEN_EDITS[edit]
    case = _golden_case(tmp_path, fn)
    assert_clean_error(cli("parity", str(case), "--device", "cpu"), needle)


GOLDEN_INCONSISTENT = {
    "pixel_values_wrong_width": (lambda t, m: t.update({"input.pixel_values": t["input.pixel_values"][:, :17]
                                                       .contiguous()}), "input.pixel_values"),
    "input_ids_out_of_vocab": (lambda t, m: t.update({"input.input_ids": t["input.input_ids"] + 10**6}),
                               "input.input_ids"),
    "input_ids_negative": (lambda t, m: t.update({"input.input_ids": t["input.input_ids"] * 0 - 5}),
                           "input.input_ids"),
    "grid_does_not_match_tokens": (lambda t, m: t.update({"input.image_grid_thw": t["input.image_grid_thw"] * 2}),
                                   "input.image_grid_thw"),
    "grid_rows_fit_but_tokens_do_not": (
        lambda t, m: t.update({"input.image_grid_thw": t["input.image_grid_thw"][:, [0, 2, 1]] * 0 + 1}),
        "input.image_grid_thw"),
    "empty_input_ids": (lambda t, m: t.update({"input.input_ids": t["input.input_ids"][:, :0].contiguous(),
                                               "input.attention_mask": t["input.attention_mask"][:, :0]
                                               .contiguous()}), "input.input_ids"),
    "float_key_stored_as_int": (lambda t, m: t.update({"text.norm": t["text.norm"].long()}), "text.norm"),
    "int_key_stored_as_float": (lambda t, m: t.update({"generate.greedy": t["generate.greedy"].float()}),
                                "generate.greedy"),
    "logits_wrong_length": (lambda t, m: t.update({"logits": t["logits"][:, 1:].contiguous()}), "logits"),
    "position_ids_2d": (lambda t, m: t.update({"text.position_ids": t["text.position_ids"][0].contiguous()}),
                        "text.position_ids"),
    "mask_not_binary": (lambda t, m: t.update({"input.attention_mask": t["input.attention_mask"] * 3}),
                        "input.attention_mask"),
}


@pytest.mark.parametrize("edit", list(GOLDEN_INCONSISTENT))
def test_golden_inconsistent_with_its_model_is_exit_2(tmp_path, edit):
    """Goldens that do not fit their own model/config.json are exit 2 naming the key (before: tracebacks,
    or exit 0 for a float key stored as int64)."""
    fn, needle = GOLDEN_INCONSISTENT[edit]
    case = _golden_case(tmp_path, fn)
    assert_clean_error(cli("parity", str(case), "--device", "cpu"), needle)


def test_committed_goldens_pass_the_model_checks():
    from qwen3vl_eval.model.parity import load_case

    for case in sorted(p for p in GOLDEN.iterdir() if (p / "golden.safetensors").is_file()):
        load_case(case)


def test_golden_that_is_not_safetensors_is_exit_2(tmp_path):
    case = Path(shutil.copytree(GOLDEN / "image", tmp_path / "case"))
    (case / "golden.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + os.urandom(64))
    assert_clean_error(cli("parity", str(case), "--device", "cpu"), "golden.safetensors")


# ---------------------------------------------------------------- checkpoints

def _ckpt(tiny_ckpt: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_ckpt, tmp_path / "ckpt"))


def _drop(cfg: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        cfg = cfg[p]
    del cfg[last]


@pytest.mark.parametrize("field", ["text_config.hidden_size", "text_config.num_hidden_layers",
                                   "vision_config.depth", "text_config", "vision_config"])
def test_config_with_a_missing_field_is_exit_2_naming_it(tiny_ckpt, tmp_path, field):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    cfg = json.loads((ckpt / "config.json").read_text())
    _drop(cfg, field)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    m = _messages(tmp_path, [{"role": "user", "content": "hi"}])
    assert_clean_error(cli("generate", "--model", str(ckpt), "--messages", str(m), "--max-new-tokens", "1",
                           "--device", "cpu"), field.split(".")[-1])


def test_config_not_json_is_exit_2(tiny_ckpt, tmp_path):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    (ckpt / "config.json").write_text("{\"model_type\": ")
    m = _messages(tmp_path, [{"role": "user", "content": "hi"}])
    assert_clean_error(cli("generate", "--model", str(ckpt), "--messages", str(m), "--device", "cpu"),
                       "config.json")


class _Payload:
    """Unpickling this would create a file: proof that a pickle was (not) loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_only_checkpoint_is_refused_without_unpickling(tiny_ckpt, tmp_path):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    (ckpt / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (ckpt / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(str(marker))))
    m = _messages(tmp_path, [{"role": "user", "content": "hi"}])
    assert_clean_error(cli("generate", "--model", str(ckpt), "--messages", str(m), "--device", "cpu"),
                       ".bin", "safetensors")
    assert not marker.exists()


def test_no_code_path_unpickles_or_trusts_remote_code():
    """Static guard: the package never calls torch.load / pickle.load(s) and never sets trust_remote_code."""
    bad = re.compile(r"torch\.load\(|pickle\.loads?\(|trust_remote_code\s*=\s*True|weights_only\s*=\s*False")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "qwen3vl_eval").rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    assert not hits, hits

