"""CLI input files that used to be accepted silently, crash or run unbounded (issue #14): size caps, deep
nesting, messages without content or type, bad generation settings, empty or non-UTF-8 data and prediction
files, animated GIFs, prompts beyond the context. Each is one line and exit 2 (or a warning, for GIFs)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_clean_error, cli
from PIL import Image

from qwen3vl_eval.jsonio import MAX_DEPTH, MAX_MESSAGES_BYTES, loads, nesting_depth

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, obj, name: str = "m.json") -> Path:
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def _generate(tiny_ckpt: Path, messages: Path, *extra: str):
    return cli("generate", "--model", str(tiny_ckpt), "--messages", str(messages), "--max-new-tokens", "1",
               "--device", "cpu", *extra)


# ---------------------------------------------------------------- messages files

def test_messages_file_over_the_size_cap_is_refused_before_reading(tiny_ckpt, tmp_path):
    m = tmp_path / "big.json"
    with open(m, "w") as f:  # valid JSON: one huge text message
        f.write('[{"role": "user", "content": "')
        f.write("x" * (MAX_MESSAGES_BYTES + 1))
        f.write('"}]')
    for command in ("generate", "preprocess"):
        r = cli(command, "--model", str(tiny_ckpt), "--messages", str(m), *(["--device", "cpu"]
                                                                             if command == "generate" else []))
        assert_clean_error(r, "big.json", "messages file", "byte limit")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deeply_nested_messages_are_one_line(tiny_ckpt, tmp_path, depth):
    m = _write(tmp_path, "[" * depth + "]" * depth)
    assert_clean_error(_generate(tiny_ckpt, m), "m.json", "nested deeper than")


BAD_MESSAGES = [
    ({"role": "user"}, "no 'content'"),
    ([{"role": "user"}], "no 'content'"),
    ([{"role": "system", "content": "be brief"}, {"role": "user"}], "message 1: message has no 'content'"),
    ([{"role": "user", "content": [{"text": "hi"}]}], "no 'type'"),
    ([{"role": "user", "content": [{"image": "cat.png"}]}], "no 'type'"),
]


@pytest.mark.parametrize(("messages", "needle"), BAD_MESSAGES)
def test_messages_without_content_or_type_are_errors(tiny_ckpt, tmp_path, messages, needle):
    m = _write(tmp_path, messages)
    assert_clean_error(_generate(tiny_ckpt, m), needle)
    assert_clean_error(cli("preprocess", "--model", str(tiny_ckpt), "--messages", str(m)), needle)


@pytest.mark.parametrize(("flag", "value", "needle"), [
    ("--top-k", "-1", "top_k"), ("--seed", str(10**30), "seed"), ("--temperature", "nan", "temperature"),
    ("--max-new-tokens", "0", "max_new_tokens"), ("--top-p", "1.5", "top_p")])
def test_bad_generation_options_are_one_line(tiny_ckpt, tmp_path, flag, value, needle):
    m = _write(tmp_path, [{"role": "user", "content": "hi"}])
    assert_clean_error(_generate(tiny_ckpt, m, flag, value), needle)


def test_prompt_plus_max_new_tokens_beyond_the_context_is_exit_2(tiny_ckpt, tmp_path):
    m = _write(tmp_path, [{"role": "user", "content": "hi"}])
    ctx = json.loads((tiny_ckpt / "config.json").read_text())["text_config"]["max_position_embeddings"]
    r = cli("generate", "--model", str(tiny_ckpt), "--messages", str(m), "--max-new-tokens", str(ctx),
            "--device", "cpu", "--ignore-eos")
    assert_clean_error(r, f"context of {ctx} tokens", "max_new_tokens")


def _gif(frames: int) -> bytes:
    b = io.BytesIO()
    imgs = [Image.new("RGB", (64, 48), (40 * i, 10, 10)) for i in range(frames)]
    imgs[0].save(b, "GIF", save_all=True, append_images=imgs[1:], duration=100, loop=0)
    return b.getvalue()


def test_animated_gif_warns_that_frame_0_is_used(tiny_ckpt, tmp_path):
    (tmp_path / "anim.gif").write_bytes(_gif(3))
    (tmp_path / "still.gif").write_bytes(_gif(1))
    for name, warned in (("anim.gif", True), ("still.gif", False)):
        m = _write(tmp_path, [{"role": "user", "content": [{"type": "image", "image": name},
                                                           {"type": "text", "text": "?"}]}])
        r = subprocess.run([sys.executable, "-m", "qwen3vl_eval", "preprocess", "--model", str(tiny_ckpt),
                            "--messages", str(m)], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr
        assert ("frame 0 is used" in r.stderr) == warned, r.stderr
        assert "3 frames" in r.stderr or not warned


# ---------------------------------------------------------------- --data and --predictions files

@pytest.mark.parametrize("command", ["run", "score"])
def test_empty_data_file_is_an_error(tmp_path, command):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    preds = _write(tmp_path, "", "preds.jsonl")
    args = (["run", "--model", "tiny", "--output", str(tmp_path / "out")] if command == "run"
            else ["score", "--predictions", str(preds), "--output", str(tmp_path / "out")])
    assert_clean_error(cli(*args, "--task", "gsm8k", "--data", str(data)), "empty.jsonl", "no rows")


@pytest.mark.parametrize("content", [b'{"question": "caf\xe9", "answer": "#### 1"}\n',
                                     b'{"question": "q", "answer": ' + b"[" * 100000 + b"\n",
                                     b'{"question": "q", "answer": "#### 1"}\n[1, 2]\n'],
                         ids=["latin1", "deep", "not_object"])
def test_unreadable_data_file_is_one_line(tmp_path, content):
    data = tmp_path / "data.jsonl"
    data.write_bytes(content)
    preds = _write(tmp_path, "", "preds.jsonl")
    r = cli("score", "--task", "gsm8k", "--data", str(data), "--predictions", str(preds), "--output",
            str(tmp_path / "out"))
    assert_clean_error(r, "data.jsonl:")


def test_non_utf8_predictions_are_one_line(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n")
    preds = tmp_path / "preds.jsonl"
    preds.write_bytes(b'{"id": "0", "prediction": "caf\xe9"}\n')
    r = cli("score", "--task", "gsm8k", "--data", str(data), "--predictions", str(preds), "--output",
            str(tmp_path / "out"))
    assert_clean_error(r, "preds.jsonl:1", "not UTF-8")


def test_run_with_a_negative_top_k_fails_before_the_model_loads(tmp_path):
    r = cli("run", "--task", "synth_text", "--model", "tiny", "--top-k", "-1", "--output", str(tmp_path / "out"),
            "--limit", "1")
    # the generation settings are checked after the data and the model are found, before the model loads
    assert_clean_error(r, "synth_text: generation setting top_k must be >= 0")
    assert not (tmp_path / "out").exists()


def test_data_row_over_the_line_cap_is_refused(tmp_path, monkeypatch):
    import qwen3vl_eval.jsonio as jsonio

    monkeypatch.setattr(jsonio, "MAX_LINE_BYTES", 1000)
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"question": "q" * 5000, "answer": "#### 1"}) + "\n")
    preds = _write(tmp_path, "", "preds.jsonl")
    r = cli("score", "--task", "gsm8k", "--data", str(data), "--predictions", str(preds), "--output",
            str(tmp_path / "out"))
    assert_clean_error(r, "data.jsonl:1", "byte limit")


def test_nesting_helpers():
    assert nesting_depth(1) == 0 and nesting_depth([]) == 1 and nesting_depth({"a": [[1]]}) == 3
    assert loads('{"a": [1]}', "x") == {"a": [1]}
    with pytest.raises(Exception, match="nested deeper"):
        loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "x")
