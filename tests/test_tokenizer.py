"""The tokenizer against transformers 5.23's Qwen2Tokenizer (golden ids and decodes with the full Qwen
tokenizer), and the tiny checkpoint's special tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen3vl_eval.checkpoints.tiny import TINY_VOCAB, build_tiny_checkpoint, qwen_tokenizer_dir, tiny_ids
from qwen3vl_eval.processor import Tokenizer

GOLDEN = Path(__file__).resolve().parents[1] / "reference" / "processor_golden" / "cases.json"
CASES = json.loads(GOLDEN.read_text(encoding="utf-8"))["tokenizer"]


@pytest.fixture(scope="module")
def full() -> Tokenizer:
    return Tokenizer.from_pretrained(qwen_tokenizer_dir())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["text"][:20])
def test_matches_transformers(full: Tokenizer, case: dict) -> None:
    assert full.encode(case["text"]) == case["ids"]
    assert full.decode(case["ids"], skip_special_tokens=True) == case["decoded_skip"]
    assert full.decode(case["ids"], skip_special_tokens=False) == case["decoded_keep"]


def test_full_special_tokens(full: Tokenizer) -> None:
    assert full.token_to_id("<|image_pad|>") == 151655
    assert full.eos_token_id == 151645 and full.pad_token_id == 151643
    assert full.encode("<|im_start|>user\n") == [151644, 872, 198]
    assert full.decode([151667, 151644, 77091], skip_special_tokens=True) == "<think>assistant"  # <think> kept


def test_tiny_tokenizer(tmp_path: Path) -> None:
    tok = Tokenizer.from_pretrained(build_tiny_checkpoint(tmp_path))
    ids = tiny_ids()
    assert tok.token_to_id("<|image_pad|>") == ids["image_token_id"]
    assert tok.eos_token_id == ids["im_end"] and tok.pad_token_id == ids["endoftext"]
    assert tok.vocab_size == TINY_VOCAB + 26
    text = "Hello, world! 123"
    assert tok.decode(tok.encode(text)) == text


def test_config_added_tokens_are_registered(tmp_path: Path) -> None:
    """Added tokens listed only in tokenizer_config.json are registered, special ones skipped on decode."""
    src = qwen_tokenizer_dir()
    data = json.loads((src / "tokenizer.json").read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<|video_pad|>"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    (tmp_path / "tokenizer_config.json").write_text((src / "tokenizer_config.json").read_text())
    tok = Tokenizer.from_pretrained(tmp_path)
    vid = tok.token_to_id("<|video_pad|>")
    assert vid is not None and tok.encode("a<|video_pad|>b")[1] == vid
    assert tok.decode(tok.encode("a<|video_pad|>b")) == "ab"
