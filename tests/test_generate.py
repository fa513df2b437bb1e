"""Generation engine: greedy parity with transformers' goldens, batch invariance, sampling, stopping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from qwen3vl_eval.backends.native import Engine
from qwen3vl_eval.cli import app
from qwen3vl_eval.model.generate import GenerationOutput, finish_row, generate
from qwen3vl_eval.model.sampling import GenerationParams, process_logits, select_tokens
from qwen3vl_eval.model.weights import load_model
from qwen3vl_eval.processor.chat import split_reasoning

GOLDEN = sorted(p for p in (Path(__file__).parents[1] / "reference" / "golden").iterdir() if p.is_dir())




def _greedy(n: int, **kw) -> GenerationParams:
    return GenerationParams(max_new_tokens=n, temperature=0.0, ignore_eos=True, **kw)


@pytest.mark.parametrize("case", GOLDEN, ids=[p.name for p in GOLDEN])
def test_greedy_equals_transformers_golden(case: Path) -> None:
    g = load_file(str(case / "golden.safetensors"))
    model = load_model(case / "model", device="cpu", dtype=torch.float32)
    want = g["generate.greedy"]
    outs = generate(model, g["input.input_ids"], g.get("input.attention_mask"), _greedy(want.shape[1]),
                    pixel_values=g.get("input.pixel_values"), image_grid_thw=g.get("input.image_grid_thw"),
                    pixel_values_videos=g.get("input.pixel_values_videos"),
                    video_grid_thw=g.get("input.video_grid_thw"))
    assert [o.token_ids for o in outs] == want.tolist()
    assert all(o.finish_reason == "length" for o in outs)


def test_batch_invariance_mixed_batch(engine: Engine, media: Path) -> None:
    convs = [
        [{"role": "user", "content": [{"type": "image", "image": "noise.png"}, {"type": "text", "text": "What?"}]}],
        [{"role": "user", "content": [{"type": "video", "video": "clip.mp4"}, {"type": "text", "text": "Describe."}]}],
        [{"role": "user", "content": "Tell me a long story about a cat and a dog who become friends."}],
        [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": [{"type": "image", "image": "green.png"}, {"type": "text", "text": "Colour?"}]},
         {"role": "assistant", "content": "Green."},
         {"role": "user", "content": "Are you sure?"}],
    ]
    params = _greedy(10)
    together = engine.chat(convs, params, base_dir=media)
    alone = [engine.chat([c], params, base_dir=media)[0] for c in convs]
    assert len({len(r.token_ids) for r in together}) == 1
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    lengths = engine.processor(convs, base_dir=media).attention_mask.sum(-1)
    assert len(set(lengths.tolist())) == 4  # the batch really is padded to different lengths


def test_seeded_sampling(engine: Engine) -> None:
    conv = [[{"role": "user", "content": "Write something."}]] * 2
    sample = GenerationParams(max_new_tokens=12, temperature=1.0, top_p=0.95, ignore_eos=True, seed=7)
    a = engine.chat(conv, sample)
    b = engine.chat(conv, sample)
    c = engine.chat(conv, GenerationParams(**{**sample.__dict__, "seed": 8}))
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert [r.token_ids for r in a] != [r.token_ids for r in c]
    assert a[0].token_ids != a[1].token_ids  # rows draw different noise
    top1 = engine.chat(conv, GenerationParams(max_new_tokens=12, temperature=1.0, top_k=1, ignore_eos=True, seed=7))
    greedy = engine.chat(conv, _greedy(12))
    assert [r.token_ids for r in top1] == [r.token_ids for r in greedy]


def test_eos_and_stop_strings_end_rows_independently(engine: Engine) -> None:
    convs = [[{"role": "user", "content": "First question?"}], [{"role": "user", "content": "Another one, longer."}]]
    free = engine.chat(convs, _greedy(12))
    assert [len(r.token_ids) for r in free] == [12, 12]  # max_new_tokens honoured exactly
    eos = free[0].token_ids[3]
    assert eos not in free[1].token_ids[:12]
    out = engine.chat(convs, GenerationParams(max_new_tokens=12, eos_token_ids=(eos,)))
    first = free[0].token_ids.index(eos)
    assert out[0].token_ids == free[0].token_ids[: first + 1] and out[0].finish_reason == "stop"
    assert out[1].token_ids == free[1].token_ids and out[1].finish_reason == "length"
    tok = engine.processor.tokenizer
    text1 = tok.decode(free[1].token_ids)
    stop = text1[len(tok.decode(free[1].token_ids[:5])):][:3]
    assert stop and stop not in tok.decode(free[1].token_ids[:5])
    out = engine.chat(convs, _greedy(12, stop=(stop,)))
    assert out[1].finish_reason == "stop" and out[1].text == text1[: text1.find(stop)]
    assert out[1].token_ids == free[1].token_ids[: len(out[1].token_ids)]
    assert len(out[1].token_ids) < 12


def test_process_logits_by_hand() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    k2 = process_logits(logits, GenerationParams(temperature=1.0, top_k=2), None, None)
    assert torch.isinf(k2[0, 2:]).all() and torch.isfinite(k2[0, :2]).all()
    # softmax([2,1,0,-1]) = [.644, .237, .087, .032]: top_p 0.8 keeps the two tokens whose mass reaches 0.8
    p = process_logits(logits, GenerationParams(temperature=1.0, top_p=0.8), None, None)
    assert torch.isfinite(p[0, :2]).all() and torch.isinf(p[0, 2:]).all()
    t = process_logits(logits, GenerationParams(temperature=2.0), None, None)
    assert torch.allclose(t, logits / 2)
    seen = torch.tensor([[True, False, False, True]])
    r = process_logits(logits, GenerationParams(repetition_penalty=2.0), seen, None)
    assert r.tolist() == [[1.0, 1.0, 0.0, -2.0]]
    counts = torch.tensor([[0, 3, 0, 1]])
    pp = process_logits(logits, GenerationParams(presence_penalty=0.5), None, counts)
    assert pp.tolist() == [[2.0, 0.5, 0.0, -1.5]]
    assert select_tokens(logits, GenerationParams(), None).tolist() == [0]


def test_generation_config_defaults(tmp_path: Path) -> None:
    f = tmp_path / "generation_config.json"
    f.write_text(json.dumps({"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                             "eos_token_id": [5, 6]}))
    p = GenerationParams.from_generation_config(f)
    assert (p.temperature, p.top_p, p.top_k, p.eos_token_ids) == (0.7, 0.8, 20, (5, 6))
    assert GenerationParams.from_generation_config(f, temperature=0).greedy
    f.write_text(json.dumps({"do_sample": False, "temperature": 0.7, "eos_token_id": 5}))
    p = GenerationParams.from_generation_config(f)
    assert p.greedy and p.eos_token_ids == (5,)


def test_finish_row_is_one_rule_for_eos_and_stop_strings() -> None:
    """Rows checked every few steps (native) and rows generated whole (hf) are cut alike: a stop string reached
    before the first eos wins, even when both fall in one check window."""
    def decode(ids: list[int]) -> str:
        return "".join(chr(96 + i) for i in ids)  # 1 -> "a", 9 (eos) -> "i"

    p = GenerationParams(max_new_tokens=8, eos_token_ids=(9,), stop=("c",))
    assert finish_row([1, 2, 3, 4, 9, 0], p, decode) == GenerationOutput([1, 2, 3], "stop", "ab")
    assert finish_row([1, 2, 9, 3, 0], p, decode) == GenerationOutput([1, 2, 9], "stop", "ab")
    assert finish_row([1, 2], p, decode, last=False) is None
    assert finish_row([1, 2], p, decode) == GenerationOutput([1, 2], "length", "ab")
    free = GenerationParams(max_new_tokens=8, eos_token_ids=(9,), ignore_eos=True)
    assert finish_row([1, 9, 2], free, decode) == GenerationOutput([1, 9, 2], "length", "aib")


def test_split_reasoning() -> None:
    assert split_reasoning("<think>\nstep one\n</think>\n\nB") == ("step one", "B")
    assert split_reasoning("step one\n</think>\n\nThe answer is C") == ("step one", "The answer is C")
    assert split_reasoning("plain answer") == (None, "plain answer")


def test_generate_command_json(engine: Engine, media: Path, tmp_path: Path) -> None:
    msgs = tmp_path / "m.json"
    msgs.write_text(json.dumps([
        [{"role": "user", "content": [{"type": "image", "image": str(media / "green.png")},
                                      {"type": "text", "text": "Colour?"}]}],
        [{"role": "user", "content": "Hello"}],
    ]))
    res = CliRunner().invoke(app, ["generate", "--model", str(engine.path), "--messages", str(msgs),
                                   "--max-new-tokens", "5", "--ignore-eos", "--json", "--device", "cpu",
                                   "--temperature", "0"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert len(rows) == 2 and all(len(r["token_ids"]) == 5 and r["finish_reason"] == "length" for r in rows)
    want = engine.chat(json.loads(msgs.read_text()), _greedy(5))
    assert [r["token_ids"] for r in rows] == [w.token_ids for w in want]
    bad = CliRunner().invoke(app, ["generate", "--model", str(engine.path), "--messages", str(tmp_path / "nope.json")])
    assert bad.exit_code == 2 and "nope.json" in bad.output


def test_vision_outputs_are_cached_by_content(engine: Engine, media: Path) -> None:
    def ask(image: str, q: str) -> list[dict]:
        return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": q}]}]

    calls: list[list] = []
    hook = engine.model.model.visual.register_forward_hook(lambda m, args, out: calls.append(args[1].tolist()))
    try:
        engine.vision_cache.clear()
        engine.vision_cache_bytes = 0
        convs = [ask("noise.png", "Q1?"), ask("noise.png", "Q2?"), ask("green.png", "Q3?")]
        replies = engine.chat(convs, _greedy(6), base_dir=media)
        assert len(calls) == 1 and len(calls[0]) == 2  # one tower call, each distinct image once
        engine.chat([ask("green.png", "Q4?")], _greedy(2), base_dir=media)
        assert len(calls) == 1  # served from the cache
    finally:
        hook.remove()
    batch = engine.processor(convs, base_dir=media)  # the same prompts through the tower inside forward
    outs = generate(engine.model, batch.input_ids, batch.attention_mask, _greedy(6), pixel_values=batch.pixel_values,
                    image_grid_thw=batch.image_grid_thw)
    assert [o.token_ids for o in outs] == [r.token_ids for r in replies]
