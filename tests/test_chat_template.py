"""Chat templates: the checkpoint's own Jinja rendered as transformers renders it (golden renders from
transformers 5.23, and the hand-checked strings of research/qwen3vl_spec.md 6.2 and 6.3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen3vl_eval.checkpoints.tiny import build_tiny_checkpoint
from qwen3vl_eval.errors import ProcessorError
from qwen3vl_eval.processor import Processor
from qwen3vl_eval.processor.chat import load_chat_template, render_chat, split_reasoning

GOLDEN = Path(__file__).resolve().parents[1] / "reference" / "processor_golden" / "cases.json"
RENDERS = json.loads(GOLDEN.read_text(encoding="utf-8"))["renders"]
IMG = {"type": "image", "image": "a.jpg"}


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Processor]:
    root = tmp_path_factory.mktemp("templates")
    return {"tiny": Processor.from_pretrained(build_tiny_checkpoint(root / "tiny")),
            "thinking": Processor.from_pretrained(build_tiny_checkpoint(root / "thinking", thinking=True))}


@pytest.mark.parametrize("case", RENDERS, ids=lambda c: c["name"])
def test_matches_transformers(case: dict, procs: dict) -> None:
    text = procs[case["ckpt"]].render(case["messages"], add_generation_prompt=case.get("add_generation_prompt",
                                                                                         True), **case["kwargs"])
    assert text == case["expected"]


def test_instruct_strings_from_spec(procs: dict) -> None:
    p = procs["tiny"]
    assert p.render([{"role": "user", "content": [IMG, {"type": "text", "text": "Describe this image."}]}]) == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe this image.<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert p.render([{"role": "user", "content": [{"type": "video", "video": "v.mp4"},
                                                  {"type": "text", "text": "Describe this video."}]}]) == (
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Describe this video.<|im_end|>\n"
        "<|im_start|>assistant\n")
    two = [{"role": "system", "content": "You are a helpful assistant."},
           {"role": "user", "content": [{"type": "text", "text": "Compare"}, IMG, IMG]}]
    vs = "<|vision_start|><|image_pad|><|vision_end|>"
    assert p.render(two) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                             f"Compare{vs}{vs}<|im_end|>\n<|im_start|>assistant\n")
    assert f"ComparePicture 1: {vs}Picture 2: {vs}" in p.render(two, add_vision_id=True)
    assert not p.render(two, add_generation_prompt=False).endswith("assistant\n")


def test_thinking_strings_from_spec(procs: dict) -> None:
    p = procs["thinking"]
    assert p.render([{"role": "user", "content": [IMG, {"type": "text", "text": "Describe this image."}]}]) == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe this image.<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n")
    history = [{"role": "user", "content": [IMG, {"type": "text", "text": "Q1"}]},
               {"role": "assistant", "content": "<think>\nr1\n</think>\n\nA1"}, {"role": "user", "content": "Q2"}]
    assert p.render(history).endswith("Q1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2"
                                      "<|im_end|>\n<|im_start|>assistant\n<think>\n")


@pytest.mark.parametrize("reply", ["<think>\n  r1 \n</think>\n\n A1 ", "plan\n</think>\n\nC\n", "<think>x</think>y",
                                   "no tags \n"])
def test_split_reasoning_reads_a_reply_as_the_thinking_template_does(procs: dict, reply: str) -> None:
    """The template renders the latest assistant turn as `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`: the
    split gives exactly the parts it writes."""
    rendered = procs["thinking"].render([{"role": "user", "content": "Q"}, {"role": "assistant", "content": reply}],
                                        add_generation_prompt=False)
    reasoning, answer = split_reasoning(reply)
    turn = rendered.split("<|im_start|>assistant\n", 1)[1]
    assert turn == f"<think>\n{reasoning or ''}\n</think>\n\n{answer}<|im_end|>\n"


def test_template_precedence(tmp_path: Path) -> None:
    (tmp_path / "chat_template.jinja").write_text("jinja")
    assert load_chat_template(tmp_path, {"chat_template": "tok"}) == "jinja"
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": "json"}))
    assert load_chat_template(tmp_path, {"chat_template": "tok"}) == "json"
    assert load_chat_template(tmp_path / "missing", {"chat_template": [{"name": "default", "template": "d"}]}) == "d"


def test_features_and_errors() -> None:
    tpl = ("{% for m in messages %}{{ m.content | tojson }}{% if loop.last %}{% break %}{% endif %}{% endfor %}"
           "{% generation %}[{{ eos_token }}]{% endgeneration %}")
    assert render_chat(tpl, [{"role": "user", "content": "é"}], special_tokens={"eos_token": "E"}) == '"é"[E]'
    with pytest.raises(ProcessorError, match="no system"):
        render_chat("{{ raise_exception('no system') }}", [])
    with pytest.raises(Exception, match="underscore"):
        render_chat("{% set ns = namespace(_x=1) %}", [])
