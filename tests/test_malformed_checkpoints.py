"""Every malformed checkpoint is exit 2 with one line naming the file (issue #14): broken safetensors, configs
that are not objects, absurd or non-finite sizes (refused before any layer is built), token ids outside the
vocabulary, index entries leaving the folder; and MoE configs as transformers 5.23 writes them load."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_clean_error, cli
from safetensors.torch import save_file

from qwen3vl_eval.model.config import PRESETS, Qwen3VLConfig, check_config

ROOT = Path(__file__).resolve().parents[1]
HF_CONFIGS = Path(__file__).parent / "data" / "transformers_5_23_configs"


def _ckpt(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "ckpt"))


def _messages(tmp_path: Path) -> Path:
    m = tmp_path / "m.json"
    m.write_text(json.dumps([{"role": "user", "content": "hi"}]))
    return m


def _generate(ckpt: Path, tmp_path: Path, *extra: str):
    return cli("generate", "--model", str(ckpt), "--messages", str(_messages(tmp_path)), "--max-new-tokens", "2",
               "--device", "cpu", "--json", *extra)


def _edit_config(ckpt: Path, edit) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    edit(cfg)
    (ckpt / "config.json").write_text(json.dumps(cfg))


# ---------------------------------------------------------------- safetensors files

def _safetensors_variants(src: bytes) -> dict[str, bytes]:
    n = struct.unpack("<Q", src[:8])[0]
    header = json.loads(src[8 : 8 + n])
    key = next(k for k in header if k != "__metadata__")
    header[key]["data_offsets"] = [0, 2**62]
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return {
        "zero_bytes": b"",
        "truncated": src[: len(src) // 2],
        "truncated_in_header": src[:20],
        "header_length_2_60": struct.pack("<Q", 2**60) + src[8:],
        "header_not_json": struct.pack("<Q", 10) + b"{not json}" + b"\0" * 64,
        "huge_data_offsets": struct.pack("<Q", len(h)) + h + src[8 + n :],
    }


@pytest.mark.parametrize("case", ["zero_bytes", "truncated", "truncated_in_header", "header_length_2_60",
                                  "header_not_json", "huge_data_offsets"])
def test_broken_safetensors_is_one_line_naming_the_file(tiny_ckpt, tmp_path, case):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(_safetensors_variants(weights.read_bytes())[case])
    assert_clean_error(_generate(ckpt, tmp_path), "model.safetensors", "not a readable safetensors file")


def test_broken_shard_of_an_index_is_named(tiny_ckpt, tmp_path):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    from safetensors import safe_open

    with safe_open(ckpt / "model.safetensors", framework="pt") as f:
        keys = list(f.keys())
    (ckpt / "model.safetensors").rename(ckpt / "model-00001-of-00002.safetensors")
    (ckpt / "model-00002-of-00002.safetensors").write_bytes(b"")
    weight_map = {k: f"model-0000{1 + (i % 2)}-of-00002.safetensors" for i, k in enumerate(keys)}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert_clean_error(_generate(ckpt, tmp_path), "model-00002-of-00002.safetensors")


@pytest.mark.parametrize("name", ["../outside.safetensors", "/tmp/outside.safetensors", "sub/../../x.safetensors",
                                  "model.bin"])
def test_index_entry_leaving_the_folder_is_refused(tiny_ckpt, tmp_path, name):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    from safetensors import safe_open

    with safe_open(ckpt / "model.safetensors", framework="pt") as f:
        keys = list(f.keys())
    shutil.copy(ckpt / "model.safetensors", tmp_path / "outside.safetensors")  # a valid file: refused by name
    weight_map = {k: "model.safetensors" for k in keys}
    weight_map[keys[0]] = name
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert_clean_error(_generate(ckpt, tmp_path), "model.safetensors.index.json", repr(name))


@pytest.mark.parametrize("content", ["[]", '{"weight_map": []}', '{"weight_map": {"a": 3}}', "{" * 100000])
def test_malformed_index_is_one_line(tiny_ckpt, tmp_path, content):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    (ckpt / "model.safetensors.index.json").write_text(content)
    assert_clean_error(_generate(ckpt, tmp_path), "model.safetensors.index.json")


# ---------------------------------------------------------------- config.json

@pytest.mark.parametrize("content", ["[1, 2]", '"config"', "null", "[" * 100000 + "]" * 100000, "\xff\xfe{}"])
def test_config_that_is_not_an_object_is_one_line(tiny_ckpt, tmp_path, content):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    (ckpt / "config.json").write_bytes(content.encode("latin-1"))
    assert_clean_error(_generate(ckpt, tmp_path), "config.json")


def _set(dotted: str, value):
    def edit(cfg: dict) -> None:
        *parents, last = dotted.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        node[last] = value
    return edit


BAD_CONFIG = [
    ("text_config.hidden_size", -64), ("text_config.hidden_size", 0), ("text_config.hidden_size", True),
    ("text_config.hidden_size", "64"), ("text_config.num_hidden_layers", 10_000_000),
    ("vision_config.depth", 10_000_000), ("text_config.vocab_size", 2**40), ("text_config.intermediate_size", -1),
    ("text_config.num_attention_heads", 0), ("text_config.num_key_value_heads", 3),
    ("text_config.head_dim", 10**6), ("text_config.max_position_embeddings", 0),
    ("text_config.max_position_embeddings", 10**12), ("vision_config.num_heads", 3),
    ("vision_config.patch_size", 0), ("vision_config.spatial_merge_size", 1000),
    ("vision_config.num_position_embeddings", 255), ("vision_config.out_hidden_size", 32),
    ("vision_config.deepstack_visual_indexes", [0, 7]), ("vision_config.deepstack_visual_indexes", 3),
    ("text_config.rms_norm_eps", float("nan")), ("text_config.rms_norm_eps", float("inf")),
    ("text_config.rms_norm_eps", -1e-6), ("text_config.rope_scaling.rope_theta", float("nan")),
    ("text_config.rope_scaling.mrope_section", [4, 2]), ("text_config.rope_scaling", "default"),
    ("image_token_id", 10**9), ("video_token_id", -1), ("vision_start_token_id", 1.5),
    ("tie_word_embeddings", "false"),
]


@pytest.mark.parametrize(("field", "value"), BAD_CONFIG, ids=[f"{f}={v!r}"[:60] for f, v in BAD_CONFIG])
def test_absurd_or_non_finite_config_values_are_refused_naming_the_field(tiny_ckpt, tmp_path, field, value):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    _edit_config(ckpt, _set(field, value))
    t0 = time.perf_counter()
    name = field.split(".")[-1] if "rope_scaling" not in field else "text_config"
    if field == "text_config.rope_scaling":
        name = "rope_parameters"
    assert_clean_error(_generate(ckpt, tmp_path), "config.json", name)
    assert time.perf_counter() - t0 < 10  # refused before building 10 million layers


def test_eos_token_id_outside_the_vocabulary_is_refused(tiny_ckpt, tmp_path):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    gc = json.loads((ckpt / "generation_config.json").read_text())
    gc["eos_token_id"] = [4098, 10**6]
    (ckpt / "generation_config.json").write_text(json.dumps(gc))
    assert_clean_error(_generate(ckpt, tmp_path), "generation_config.json", "eos_token_id 1000000",
                       "outside the vocabulary")


@pytest.mark.parametrize(("key", "value"), [("top_k", -1), ("top_k", "many"), ("temperature", float("nan")),
                                            ("eos_token_id", "x")])
def test_bad_generation_config_values_are_one_line(tiny_ckpt, tmp_path, key, value):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    gc = json.loads((ckpt / "generation_config.json").read_text())
    gc[key] = value
    gc["do_sample"] = True
    (ckpt / "generation_config.json").write_text(json.dumps(gc))
    assert_clean_error(_generate(ckpt, tmp_path), "generation_config.json", key.split("_id")[0])


def test_presets_and_released_shapes_pass_the_checks():
    for name, config in PRESETS.items():
        check_config(config, name)
        assert Qwen3VLConfig.from_hf(config.to_hf()) == config


# ---------------------------------------------------------------- configs written by transformers 5.23

@pytest.mark.parametrize("variant", ["default", "variant", "moe"])
def test_configs_saved_by_transformers_5_23_read_as_ours(variant, tiny_ckpt, tiny_variant_ckpt, tiny_moe_ckpt):
    """tests/data/transformers_5_23_configs/tiny_*.json: `AutoConfig.from_pretrained(tiny).save_pretrained()`
    run with transformers 5.23.0; the MoE one spells the expert count `num_local_experts`."""
    ours = {"default": tiny_ckpt, "variant": tiny_variant_ckpt, "moe": tiny_moe_ckpt}[variant]
    saved = json.loads((HF_CONFIGS / f"tiny_{variant}.json").read_text())
    assert saved["transformers_version"] == "5.23.0"
    if variant == "moe":
        assert "num_local_experts" in saved["text_config"] and "num_experts" not in saved["text_config"]
    parsed = Qwen3VLConfig.from_file(HF_CONFIGS / f"tiny_{variant}.json")
    assert parsed == Qwen3VLConfig.from_file(ours / "config.json")
    if variant == "moe":
        assert parsed.text.num_experts == 8


def test_moe_checkpoint_with_transformers_5_config_generates_the_same_tokens(tiny_moe_ckpt, tmp_path):
    ckpt = _ckpt(tiny_moe_ckpt, tmp_path)
    shutil.copy(HF_CONFIGS / "tiny_moe.json", ckpt / "config.json")
    before = _generate(tiny_moe_ckpt, tmp_path, "--ignore-eos")
    after = _generate(ckpt, tmp_path, "--ignore-eos")
    assert before.exit_code == 0 and after.exit_code == 0, (before.output, after.output)
    assert json.loads(after.stdout)["token_ids"] == json.loads(before.stdout)["token_ids"]


def test_both_expert_spellings_must_agree(tiny_moe_ckpt, tmp_path):
    ckpt = _ckpt(tiny_moe_ckpt, tmp_path)
    _edit_config(ckpt, _set("text_config.num_local_experts", 4))
    assert_clean_error(_generate(ckpt, tmp_path), "config.json", "num_local_experts", "num_experts")
    _edit_config(ckpt, _set("text_config.num_local_experts", 8))
    assert _generate(ckpt, tmp_path).exit_code == 0


def test_zero_experts_in_a_moe_config_is_named(tiny_moe_ckpt, tmp_path):
    ckpt = _ckpt(tiny_moe_ckpt, tmp_path)
    _edit_config(ckpt, lambda cfg: cfg["text_config"].pop("num_experts"))
    assert_clean_error(_generate(ckpt, tmp_path), "config.json", "num_local_experts")


def test_a_real_process_prints_one_line_for_a_broken_checkpoint(tiny_ckpt, tmp_path):
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    (ckpt / "model.safetensors").write_bytes(struct.pack("<Q", 2**60) + b"\0" * 64)
    r = subprocess.run([sys.executable, "-m", "qwen3vl_eval", "generate", "--model", str(ckpt), "--messages",
                        str(_messages(tmp_path)), "--device", "cpu"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "model.safetensors" in r.stderr, r.stderr


def test_save_file_round_trip_still_loads(tiny_ckpt, tmp_path):
    """The checks do not refuse a checkpoint re-saved by safetensors itself."""
    ckpt = _ckpt(tiny_ckpt, tmp_path)
    from safetensors.torch import load_file

    save_file(load_file(ckpt / "model.safetensors"), ckpt / "model.safetensors")
    assert _generate(ckpt, tmp_path).exit_code == 0
