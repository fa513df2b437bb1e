"""Per-item video budget keys in qwen-vl-utils' units (processor/video_budget.py): frame counts, indices and sizes
equal the numbers qwen-vl-utils 0.0.14 computed (tests/data/video_budget_cases.json, written by
reference/make_video_budget_cases.py); items without the keys keep transformers' rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import write_video

from qwen3vl_eval.errors import ProcessorError
from qwen3vl_eval.processor import Processor, VideoSettings, sample_indices
from qwen3vl_eval.processor.video_budget import VideoBudget

DATA = json.loads((Path(__file__).parent / "data" / "video_budget_cases.json").read_text())
META = [c for c in DATA["cases"] if "file" not in c]
FILES = [c for c in DATA["cases"] if "file" in c]


def test_the_oracle_covers_the_brief() -> None:
    assert DATA["source"].startswith("qwen-vl-utils 0.0.14") and len(DATA["cases"]) >= 8
    keys = {k for c in DATA["cases"] for k in c["options"]}
    assert keys == {"fps", "nframes", "min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels",
                    "resized_height", "resized_width"}


@pytest.mark.parametrize("case", META, ids=[c["name"] for c in META])
def test_frame_counts_indices_and_sizes_match_qwen_vl_utils(case: dict) -> None:
    settings = VideoSettings().with_overrides(**case["options"])
    idx = sample_indices(case["total_frames"], case["native_fps"], settings).tolist()
    assert len(idx) == case["nframes"]
    assert idx[:4] == case["first_indices"] and idx[-1] == case["last_index"]
    size = settings.budget.frame_size(len(idx), case["height"], case["width"], settings.factor)
    assert size == (case["resized_height"], case["resized_width"])


@pytest.mark.parametrize("case", FILES, ids=[c["name"] for c in FILES])
def test_processor_on_files_matches_qwen_vl_utils(case: dict, tiny_ckpt: Path, tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", **{**case["file"], "size": tuple(case["file"]["size"])})
    proc = Processor.from_pretrained(tiny_ckpt)
    msgs = [{"role": "user", "content": [{"type": "video", "video": str(path), **case["options"]},
                                         {"type": "text", "text": "?"}]}]
    out = proc(msgs)
    assert out.video_frame_indices == [case["indices"]]
    n = case["nframes"]
    assert out.video_grid_thw.tolist() == [[math.ceil(n / 2), case["resized_height"] // 16,
                                            case["resized_width"] // 16]]


def test_no_keys_keeps_the_checkpoint_rules(tiny_ckpt: Path, tmp_path: Path) -> None:
    """Without budget keys the whole-clip budget of the checkpoint (transformers) decides; with a key, per frame."""
    s = VideoSettings()
    assert s.with_overrides() is s and s.budget is None
    path = write_video(tmp_path / "clip.mp4", frames=24, fps=8, size=(96, 64))
    proc = Processor.from_pretrained(tiny_ckpt)
    plain = proc([{"role": "user", "content": [{"type": "video", "video": str(path)}]}])
    # tiny checkpoint: fps 2, whole clip <= 16*128*128 pixels: int(24/8*2) = 6 frames at 64x96
    assert plain.video_grid_thw.tolist() == [[3, 4, 6]]
    per_frame = proc([{"role": "user", "content": [{"type": "video", "video": str(path), "fps": 2}]}])
    # qwen-vl-utils defaults: at least 128 tokens of 32x32 per frame (64x96 grows to 320x448 = 140 tokens)
    assert per_frame.video_grid_thw.tolist() == [[3, 20, 28]]


def test_the_footgun_from_the_issue_is_gone() -> None:
    """Qwen's max_pixels 401408 copied into a task bounds each of 128 frames of 720p, not the whole clip."""
    settings = VideoSettings().with_overrides(fps=2, max_frames=128, max_pixels=401408)
    n = sample_indices(7680, 30.0, settings).size
    assert n == 128 and settings.budget.frame_size(n, 720, 1280, 32) == (448, 832)


@pytest.mark.parametrize("options,message", [
    ({"fps": 2, "nframes": 8}, "fps or nframes, not both"),
    ({"resized_height": 100}, "resized_height and resized_width go together"),
    ({"max_pixels": 4096}, "below the per-frame min_pixels 131072"),
    ({"nframes": 5000}, "over the 2048 frame limit"),
    ({"min_frames": 9, "max_frames": 4}, "min_frames 9 is above max_frames 4"),
    ({"min_pixels": 10**9}, "pixel limit"),
    ({"total_pixels": -1}, "total_pixels must be a positive number"),
    ({"nframes": 2.5}, "nframes must be an integer"),
    ({"frames": 8}, "unknown video option"),
])
def test_bad_budget_keys_are_named(options: dict, message: str) -> None:
    with pytest.raises(ProcessorError, match=message):
        budget = VideoBudget.from_options(options)
        budget.frame_size(budget.frame_count(7680, 30.0), 720, 1280, 32)


def test_frame_count_outside_the_clip_is_an_error() -> None:
    with pytest.raises(ProcessorError, match="between 2 and the clip's frame count"):
        VideoBudget(nframes=64).frame_count(30, 30.0)


def test_video_processor_key_keeps_transformers_meanings() -> None:
    """`video_processor` replaces checkpoint config fields for one item: `size` is the whole-clip bound."""
    s = VideoSettings().with_overrides(video_processor={"fps": 1, "max_frames": 8, "size": {"longest_edge": 4096}})
    assert (s.fps, s.max_frames, s.max_pixels, s.budget) == (1.0, 8, 4096, None)
    with pytest.raises(ProcessorError, match="video_processor.size.longest_edge"):
        VideoSettings().with_overrides(video_processor={"size": {"longest_edge": 10**12}})
    with pytest.raises(ProcessorError, match="video_processor must be a mapping"):
        VideoSettings().with_overrides(video_processor={"total_pixels": 1})
