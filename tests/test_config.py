"""Config parsing: released (rope_theta + rope_scaling) and transformers 5.x (rope_parameters) layouts, presets."""

from __future__ import annotations

import copy

import pytest

from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS
from qwen3vl_eval.errors import CheckpointError
from qwen3vl_eval.model.config import PRESETS, Qwen3VLConfig


def test_legacy_and_5x_rope_layouts_parse_the_same():
    legacy = PRESETS["8B"].to_hf()
    assert legacy["text_config"]["rope_scaling"]["mrope_section"] == [24, 20, 20]
    new = copy.deepcopy(legacy)
    t = new["text_config"]
    t["rope_parameters"] = {"rope_type": "default", "rope_theta": t.pop("rope_theta"),
                            "mrope_section": t.pop("rope_scaling")["mrope_section"], "mrope_interleaved": True}
    a, b = Qwen3VLConfig.from_hf(legacy), Qwen3VLConfig.from_hf(new)
    assert a == b == PRESETS["8B"]
    assert b.text.rope_theta == 5_000_000.0 and b.text.mrope_section == (24, 20, 20)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip(name):
    assert Qwen3VLConfig.from_hf(PRESETS[name].to_hf()) == PRESETS[name]


def test_bad_configs_are_clear():
    cfg = PRESETS["2B"].to_hf()
    cfg["text_config"]["rope_scaling"]["rope_type"] = "yarn"
    with pytest.raises(CheckpointError, match="rope_type 'yarn'"):
        Qwen3VLConfig.from_hf(cfg)
    with pytest.raises(CheckpointError, match="not a Qwen3-VL model"):
        Qwen3VLConfig.from_hf({"model_type": "llama"})
    with pytest.raises(CheckpointError, match="unknown preset .*known: 2B"):
        Qwen3VLConfig.from_name("Qwen3-VL-8b")


@pytest.mark.parametrize("variant", sorted(TINY_CONFIGS))
def test_tiny_variants_round_trip_and_fit_their_tokenizer(variant):
    cfg = TINY_CONFIGS[variant]
    assert Qwen3VLConfig.from_hf(cfg.to_hf()) == cfg
    assert 2 * sum(cfg.text.mrope_section) == cfg.text.head_dim
    ids = (cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id)
    assert max(ids) < cfg.text.vocab_size
