"""Property-based tests (hypothesis, bounded examples, no deadline): random message structures and processor
inputs either process or raise InputError (ProcessorError), never another exception; torn sample logs always
read back as a prefix; the runner logs every sample exactly once whatever the backend does."""

from __future__ import annotations

import base64
import io
import json
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import FakeBackend
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from qwen3vl_eval.errors import InputError
from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.runner import run_task
from qwen3vl_eval.eval.sample_log import read_records
from qwen3vl_eval.eval.synth import write_video
from qwen3vl_eval.eval.task import load_registry

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def processor(tiny_ckpt):
    from qwen3vl_eval.processor import Processor

    return Processor.from_pretrained(tiny_ckpt)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("prop_media")
    Image.new("RGB", (40, 30), (10, 200, 30)).save(d / "ok.png")
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    write_video(d / "ok.mp4", [np.full((32, 32, 3), k * 30, np.uint8) for k in range(6)], fps=4)
    (d / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 40)
    return {p.name: str(p) for p in d.iterdir()} | {"missing": str(d / "missing.png"), "dir": str(d)}


def _png_bytes() -> bytes:
    b = io.BytesIO()
    Image.new("RGB", (20, 20), (1, 2, 3)).save(b, "PNG")
    return b.getvalue()


PNG = _png_bytes()
junk = st.one_of(st.none(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False, width=32),
                 st.booleans(), st.text(max_size=8), st.lists(st.integers(), max_size=2), st.just({}))
# Pixel and frame options stay small: huge min_pixels is a known memory bomb (reports/reliability.md) and
# huge or non-finite fps a known OverflowError; they are tested, pending a processor fix, elsewhere.
size_opt = st.one_of(st.integers(-10, 300_000), st.floats(0.5, 300_000), st.text(max_size=3), st.booleans())
fps_opt = st.one_of(st.floats(0.05, 30), st.integers(-2, 30), st.text(max_size=3))
frames_opt = st.one_of(st.integers(-2, 12), st.text(max_size=2))
texts = st.one_of(st.text(max_size=30), st.sampled_from(["<|image_pad|>", "<|vision_start|>", "<think>", "{{ x }}",
                                                         "<|im_end|>", "\x00", "ü" * 20]))


def image_values(files: dict[str, str]):
    return st.one_of(st.sampled_from([files["ok.png"], files["bad.png"], files["missing"], files["dir"],
                                      files["ok.mp4"], "relative.png", "file://" + files["ok.png"]]),
                     st.just(PNG), st.binary(max_size=40),
                     st.just("data:image/png;base64," + base64.b64encode(PNG).decode()),
                     st.just("data:image/png;base64,%%%"),
                     st.builds(lambda w, h, c: Image.new("RGB", (w, h), c), st.integers(1, 80), st.integers(1, 80),
                               st.tuples(*[st.integers(0, 255)] * 3)),
                     junk)


def video_values(files: dict[str, str]):
    return st.one_of(st.sampled_from([files["ok.mp4"], files["bad.mp4"], files["missing"], files["ok.png"]]),
                     st.binary(max_size=40), junk)


def items(files: dict[str, str]):
    text_item = st.fixed_dictionaries({"type": st.sampled_from(["text", None]), "text": st.one_of(texts, junk)})
    image_item = st.fixed_dictionaries(
        {"type": st.sampled_from(["image", None]), st.sampled_from(["image", "url", "path"]): image_values(files)},
        optional={"min_pixels": size_opt, "max_pixels": size_opt})
    video_item = st.fixed_dictionaries(
        {"type": st.sampled_from(["video", None]), st.sampled_from(["video", "url", "path"]): video_values(files)},
        optional={"fps": fps_opt, "min_frames": frames_opt, "max_frames": frames_opt, "max_pixels": size_opt})
    odd_item = st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["audio", "image_url", "", 3])}), junk)
    return st.one_of(text_item, text_item, image_item, video_item, odd_item)


def conversations(files: dict[str, str]):
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "user", "system", "assistant", "tool", "bot", None, 1])},
        optional={"content": st.one_of(texts, st.lists(items(files), max_size=3), junk)})
    conversation = st.lists(st.one_of(message, message, message, junk), min_size=0, max_size=3)
    return st.one_of(conversation, st.lists(conversation, min_size=1, max_size=2), junk)


def test_random_messages_process_or_raise_input_error(processor, files):
    @SETTINGS
    @given(conversations(files), st.sampled_from(["trained", "transformers5"]))
    def check(conv, video_prompt):
        try:
            out = processor(conv, video_prompt=video_prompt)
        except InputError:
            event("InputError")
            return
        event("processed")
        assert out.input_ids.shape == out.attention_mask.shape

    check()


MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK", "YCbCr"]


def test_random_images_process_or_raise_input_error(processor):
    @SETTINGS
    @given(st.sampled_from(MODES), st.integers(1, 300), st.integers(1, 300), st.booleans(),
           st.one_of(st.none(), st.integers(1, 200_000)), st.one_of(st.none(), st.integers(1, 200_000)))
    def check(mode, w, h, encoded, min_pixels, max_pixels):
        img = Image.fromarray(np.random.default_rng(w * 1000 + h).integers(0, 255, (h, w, 3), np.uint8)).convert(mode)
        value: object = img
        if encoded:
            b = io.BytesIO()
            try:
                img.save(b, "TIFF" if mode in ("F", "I", "I;16", "CMYK", "YCbCr", "LA") else "PNG")
            except OSError:
                return  # PIL cannot write this mode in that format
            value = b.getvalue()
        item = {"type": "image", "image": value}
        item |= {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
        try:
            out = processor([{"role": "user", "content": [item, {"type": "text", "text": "?"}]}])
        except InputError:
            event("InputError")
            return
        event("processed")
        assert out.pixel_values is not None and out.pixel_values.isfinite().all()

    check()


# ---------------------------------------------------------------- sample logs and the runner

def test_a_log_cut_anywhere_reads_back_as_a_prefix(tmp_path):
    records = [{"id": str(i), "prediction": "x" * i, "scores": {"a": i / 3}} for i in range(6)]
    whole = "".join(json.dumps(r) + "\n" for r in records).encode()
    path = tmp_path / "samples.jsonl"

    @SETTINGS
    @given(st.integers(0, len(whole)))
    def check(cut):
        path.write_bytes(whole[:cut])
        got = read_records(path, repair=True)
        assert got == records[: len(got)]
        assert path.read_bytes() == whole[: path.stat().st_size]  # repaired to a whole-line prefix
        assert read_records(path) == got

    check()


def chaos_backend(fits: int, bad: set[int]) -> FakeBackend:
    """Raises out-of-memory above a batch size, fails some prompts, answers the rest."""
    return FakeBackend(fits=fits, reject=lambda t: "rejected" if zlib.crc32(t.encode()) % 7 in bad else None)


def test_runner_logs_every_sample_once_whatever_fails(tmp_path):
    spec = load_registry()["synth_grounding"]
    samples = load_samples(spec)
    runs = iter(range(10**6))

    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(st.integers(1, 9), st.integers(0, 9), st.sets(st.integers(0, 6), max_size=3), st.integers(0, 8))
    def check(batch_size, fits, bad, done_before):
        out = tmp_path / str(next(runs))
        if done_before:  # an earlier, interrupted run
            run_task(spec, samples[:done_before], chaos_backend(9, set()), out, SimpleNamespace(), batch_size=1)
        res = run_task(spec, samples, chaos_backend(fits, bad), out, SimpleNamespace(), batch_size=batch_size,
                       resume=True)
        ids = [r["id"] for r in read_records(Path(out) / "samples.jsonl")]
        assert ids == [s.id for s in samples]
        assert res["n_samples"] == len(samples)
        if fits == 0:
            assert res["n_errors"] == len(samples) - min(done_before, len(samples))

    check()
