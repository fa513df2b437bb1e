"""Hand-worked processor checks (research/qwen3vl_spec.md 5): smart_resize, frame sampling, timestamps, the
two video prompt formats, media sources, content hashes, BatchInputs.to, and the `preprocess` command."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from qwen3vl_eval.checkpoints.tiny import build_tiny_checkpoint
from qwen3vl_eval.cli import app
from qwen3vl_eval.errors import ProcessorError
from qwen3vl_eval.processor import (
    Processor,
    VideoSettings,
    frame_group_timestamps,
    sample_indices,
    smart_resize,
    smart_resize_video,
)
from qwen3vl_eval.processor.video import format_timestamp

MEDIA = Path(__file__).resolve().parents[1] / "reference" / "processor_golden" / "media"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("proc_units"))


@pytest.fixture(scope="module")
def proc(ckpt: Path) -> Processor:
    return Processor.from_pretrained(ckpt)


def ask(*items: dict, text: str = "Describe.") -> list[dict]:
    return [{"role": "user", "content": [*items, {"type": "text", "text": text}]}]


# ------------------------------------------------------------------------------------------------ math
@pytest.mark.parametrize("hw, grid", [((1365, 2048), (86, 128)), ((100, 100), (16, 16)),
                                      ((5000, 5000), (256, 256)), ((480, 640), (30, 40))])
def test_smart_resize_spec_table(hw: tuple[int, int], grid: tuple[int, int]) -> None:
    h, w = smart_resize(*hw, factor=32, min_pixels=65536, max_pixels=16777216)
    assert (h // 16, w // 16) == grid


def test_smart_resize_rounds_half_to_even_and_limits_aspect() -> None:
    assert smart_resize(48, 80, 32, 32 * 32, 10**9) == (64, 64)  # round(1.5)=2, round(2.5)=2
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2010, 32, 32, 10**9)


def test_frame_sampling_and_timestamps_spec_example() -> None:
    settings = VideoSettings()
    idx = sample_indices(300, 30.0, settings).tolist()
    assert len(idx) == 20 and idx[:6] == [0, 16, 31, 47, 63, 79] and idx[-1] == 299
    ts = frame_group_timestamps(idx, 30.0, 2)
    assert [format_timestamp(t) for t in ts[:4]] == ["<0.3 seconds>", "<1.3 seconds>", "<2.4 seconds>",
                                                     "<3.4 seconds>"]
    h, w = smart_resize_video(20, 360, 640, 32, 2, settings.min_pixels, settings.max_pixels)
    assert (10, h // 16, w // 16) == (10, 22, 40)


def test_frame_sampling_clamps() -> None:
    s = VideoSettings(min_frames=4, max_frames=8)
    assert sample_indices(3, 30.0, s).tolist() == [0, 1, 2]  # fewer frames than min_frames: all of them
    assert len(sample_indices(10_000, 30.0, s)) == 8
    assert len(sample_indices(48, None, s)) == 4  # no native rate: 24 assumed, 48/24*2 = 4
    assert frame_group_timestamps([0, 10, 20], 10.0, 2) == [0.5, 2.0]  # odd count: last index repeated
    assert format_timestamp(0.25) == "<0.2 seconds>" and format_timestamp(12.0) == "<12.0 seconds>"
    with pytest.raises(ValueError, match="at least 2"):
        smart_resize_video(1, 64, 64)


# ------------------------------------------------------------------------------------------------ prompts
def test_video_prompt_formats(proc: Processor) -> None:
    item = {"type": "video", "video": str(MEDIA / "h264_30fps.mp4")}
    trained = proc(ask(item), video_prompt="trained").prompts[0]
    hf5 = proc(ask(item), video_prompt="transformers5").prompts[0]
    vs, ve, pad = "<|vision_start|>", "<|vision_end|>", "<|video_pad|>"
    assert trained.startswith(f"<|im_start|>user\n<0.3 seconds>{vs}{pad}")
    assert hf5.startswith(f"<|im_start|>user\n{vs}<0.3 seconds>{vs}{pad}")
    assert hf5.count(vs) == trained.count(vs) + 1 and hf5.count(ve) == trained.count(ve) + 1
    assert f"{ve}Describe." in trained and f"{ve}{ve}Describe." in hf5
    with pytest.raises(ProcessorError, match="video_prompt"):
        proc(ask(item), video_prompt="vllm")


def test_text_only_and_mm_token_types(proc: Processor) -> None:
    out = proc(ask({"type": "image", "image": str(MEDIA / "rgb.jpg")}))
    assert out.pixel_values is not None and out.pixel_values_videos is None
    n = int(out.image_grid_thw.prod(-1).sum()) // 4
    assert int((out.mm_token_type_ids == 1).sum()) == n
    text = proc([{"role": "user", "content": "hi"}])
    assert text.pixel_values is None and text.image_grid_thw is None and text.attention_mask.all()


# ------------------------------------------------------------------------------------------------ sources
def test_sources_agree(proc: Processor, tmp_path: Path) -> None:
    path = MEDIA / "rgb.jpg"
    data = path.read_bytes()
    b64 = base64.b64encode(data).decode()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.jpg").write_bytes(data)
    variants = [{"image": str(path)}, {"url": path.as_uri()}, {"path": "sub/x.jpg"},
                {"image": f"data:image/jpeg;base64,{b64}"}, {"image": b64}]
    outs = [proc(ask({"type": "image", **v}), base_dir=tmp_path) for v in variants]
    for out in outs[1:]:
        assert torch.equal(out.pixel_values, outs[0].pixel_values)
        assert out.image_hashes == outs[0].image_hashes


def test_exif_orientation_decodes_the_same_in_run_and_generate(proc: Processor, tmp_path: Path) -> None:
    """One image decoding: a task image (HF struct with embedded bytes, or a path under the media root) reaches
    the processor exactly as the same file in a `generate --messages` item, upright per its EXIF orientation;
    refcoco's target size is that upright size."""
    from qwen3vl_eval.eval.adapters import Sample
    from qwen3vl_eval.eval.media import image_source
    from qwen3vl_eval.eval.runner import conversation
    from qwen3vl_eval.eval.task import load_registry
    from qwen3vl_eval.processor.image import image_size

    rng = np.random.default_rng(0)
    img = PIL.Image.fromarray(rng.integers(0, 256, (48, 96, 3), dtype=np.uint8))  # wide as stored
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: upright it is tall
    path = tmp_path / "rotated.png"
    img.save(path, exif=exif)
    generate = proc(ask({"type": "image", "image": str(path)}))
    spec = load_registry()["synth_imageqa"]
    for ref in ({"bytes": path.read_bytes(), "path": None}, {"bytes": None, "path": "rotated.png"}):
        sample = Sample("x", "red", "What?", images=[ref], media_roots=(tmp_path,))
        run = proc(conversation(spec, sample))
        assert torch.equal(run.pixel_values, generate.pixel_values)
        assert torch.equal(run.image_grid_thw, generate.image_grid_thw)
        assert image_size(image_source(ref, (tmp_path,))) == (48, 96)
    t, h, w = generate.image_grid_thw[0].tolist()
    assert h > w  # transposed: taller than wide


def test_pil_images_composite_alpha_on_white(proc: Processor) -> None:
    """In-memory PIL images follow transformers' PIL path: transparency blended onto white."""
    clear = PIL.Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    out = proc(ask({"type": "image", "image": clear}))
    assert torch.all(out.pixel_values == 1.0)
    from_file = io.BytesIO()
    clear.save(from_file, format="PNG")  # a file: alpha dropped, as transformers' decode_image does
    out = proc(ask({"type": "image", "image": from_file.getvalue()}))
    assert torch.all(out.pixel_values == -1.0)


def test_content_hashes(proc: Processor) -> None:
    a = {"type": "image", "image": str(MEDIA / "rgb.jpg")}
    b = {"type": "image", "image": str(MEDIA / "gray.jpg")}
    out = proc(ask(a, b, a))
    assert out.image_hashes[0] == out.image_hashes[2] != out.image_hashes[1]
    small = proc(ask({**a, "max_pixels": 64 * 64}))
    assert small.image_hashes[0] != out.image_hashes[0]  # settings are part of the key
    arr = np.array(PIL.Image.open(MEDIA / "rgb.jpg"))
    pil = proc(ask({"type": "image", "image": PIL.Image.fromarray(arr)}))
    assert torch.equal(pil.pixel_values, out.pixel_values[: pil.pixel_values.shape[0]])
    v = proc(ask({"type": "video", "video": str(MEDIA / "vp9_24fps.webm")}))
    assert len(v.video_hashes) == 1 and len(v.video_hashes[0]) == 64


@pytest.mark.parametrize("item, match", [
    ({"type": "image", "image": "http://127.0.0.1:9/cat.png"}, "cannot download"),
    ({"type": "image", "image": "data:image/png;base64,@@@"}, "invalid base64"),
    ({"type": "image"}, "none of the keys"),
    ({"type": "image", "image": "rgb.jpg", "max_pixels": -1}, "positive"),
    ({"type": "video", "video": str(MEDIA / "rgb.jpg")}, "rgb.jpg"),
    ({"type": "image", "image": str(MEDIA / "h264_30fps.mp4")}, "cannot read image"),
])
def test_bad_items_name_the_item(proc: Processor, item: dict, match: str) -> None:
    with pytest.raises(ProcessorError, match=match) as e:
        proc(ask(item), base_dir=MEDIA)
    assert "conversation 0, message 0, item 0" in str(e.value)


def test_placeholder_mismatch_is_an_error(proc: Processor) -> None:
    with pytest.raises(ProcessorError, match="placeholder"):
        proc([{"role": "assistant", "content": [{"type": "image", "image": str(MEDIA / "rgb.jpg")}]}])
    with pytest.raises(ProcessorError, match="role"):
        proc([{"role": "robot", "content": "x"}])


def test_batch_inputs_to(proc: Processor) -> None:
    out = proc(ask({"type": "image", "image": str(MEDIA / "rgb.jpg")})).to("cpu", torch.bfloat16)
    assert out.pixel_values.dtype == torch.bfloat16 and out.input_ids.dtype == torch.int64
    assert out.image_grid_thw.dtype == torch.int64


# ------------------------------------------------------------------------------------------------ CLI
def test_preprocess_command(ckpt: Path, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    for name in ("rgb.jpg", "short3.mp4"):
        (media / name).write_bytes((MEDIA / name).read_bytes())
    msgs = tmp_path / "messages.json"
    msgs.write_text(json.dumps(ask({"type": "image", "image": "media/rgb.jpg"},
                                   {"type": "video", "video": "media/short3.mp4"})))
    out = tmp_path / "inputs.safetensors"
    res = CliRunner().invoke(app, ["preprocess", "--model", str(ckpt), "--messages", str(msgs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "<|image_pad|>*" in res.output and "seconds>" in res.output
    tensors = load_file(str(out))
    assert set(tensors) == {"input.input_ids", "input.attention_mask", "input.pixel_values", "input.image_grid_thw",
                            "input.pixel_values_videos", "input.video_grid_thw"}
    msgs.write_text(json.dumps(ask({"type": "image", "image": "media/missing.png"})))
    res = CliRunner().invoke(app, ["preprocess", "--model", str(ckpt), "--messages", str(msgs)])
    assert res.exit_code == 2 and "missing.png" in res.output


def test_settings_from_a_checkpoint_folder(tmp_path: Path) -> None:
    """One reader of the preprocessor configs (processor, hf and openai backends, HTML pages): defaults without
    the file, a CheckpointError naming it when it is not a JSON object."""
    from qwen3vl_eval.errors import CheckpointError
    from qwen3vl_eval.processor import ImageSettings, VideoSettings

    assert VideoSettings.from_folder(tmp_path) == VideoSettings()
    (tmp_path / "video_preprocessor_config.json").write_text('{"fps": 4}')
    assert VideoSettings.from_folder(tmp_path).fps == 4.0
    (tmp_path / "preprocessor_config.json").write_text("{nope")
    with pytest.raises(CheckpointError, match="preprocessor_config.json"):
        ImageSettings.from_folder(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("[1]")
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        ImageSettings.from_folder(tmp_path)
