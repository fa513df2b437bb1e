"""`qwen3vl-eval drift` on tiny checkpoints: our `serve` of the same checkpoint in fp32 agrees token for token
(KL at float noise), bf16 drifts measurably but under the default gate, and a checkpoint with one perturbed layer
or a server with another max_pixels fails the gates with exit 1, named. The KL estimator's bound is checked
against the full-vocabulary KL."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import ServerThread, assert_clean_error, cli
from safetensors.torch import load_file, save_file

from qwen3vl_eval.backends.native import Engine
from qwen3vl_eval.backends.serve import create_app
from qwen3vl_eval.drift.candidates import ServerCandidate
from qwen3vl_eval.drift.measure import step_kl

TASKS = "synth_imageqa,synth_text"
COMMON = ("--task", TASKS, "--limit", "2", "--max-new-tokens", "10", "--device", "cpu")


def drift(tiny: Path, out: Path, *args: str):
    r = cli("drift", "--model", str(tiny), *COMMON, "--output", str(out), *args)
    doc = json.loads((out / "drift.json").read_text()) if (out / "drift.json").is_file() else None
    return r, doc


@pytest.fixture(scope="module")
def same_server(engine: Engine) -> Iterator[str]:
    srv = ServerThread(create_app(engine, model_name="tiny"))
    yield srv.url
    srv.stop()


def test_our_serve_of_the_same_checkpoint_agrees(tiny_ckpt: Path, same_server: str, tmp_path: Path):
    r, doc = drift(tiny_ckpt, tmp_path, "--base-url", same_server, "--served-model-name", "tiny")
    assert r.exit_code == 0, r.output
    for task in TASKS.split(","):
        agg = doc["tasks"][task]
        assert agg["n_errors"] == 0 and agg["n_steps"] > 0
        assert agg["top1_agreement"]["mean"] == 1.0 and agg["pooled"]["top1_agreement"] == 1.0
        assert agg["exact_reply"]["mean"] == 1.0 and agg["first_divergence"]["n_diverged"] == 0
        assert agg["mean_kl"]["mean"] < 1e-8 and agg["pooled"]["max_kl"] < 1e-7  # float noise
        assert agg["mean_abs_logprob_diff"]["mean"] < 1e-4
        assert agg["prompt_token_mismatch"] == 0
        pp = agg["prompt_positions"]  # our serve offers vLLM's prompt_logprobs
        assert pp["n_samples"] == 2 and pp["top1_agreement"]["mean"] == 1.0 and pp["mean_kl"]["mean"] < 1e-8
    assert doc["candidate"]["models"]["data"][0]["id"] == "tiny"
    assert doc["candidate"]["prompt_logprobs_offered"] is True
    assert doc["versions"]["torch"] == torch.__version__ and doc["reference"]["dtype"] == "float32"
    md = (tmp_path / "drift.md").read_text()
    assert "all passed" in md and "| synth_imageqa | 2 | 0 | 1 [1, 1] |" in md


def test_bf16_candidate_without_a_server_drifts_a_little(tiny_ckpt: Path, tmp_path: Path):
    r, doc = drift(tiny_ckpt, tmp_path, "--candidate-dtype", "bfloat16")
    assert r.exit_code == 0, r.output
    kls = [doc["tasks"][t]["mean_kl"]["mean"] for t in TASKS.split(",")]
    assert all(0 < kl < doc["gates"]["max_mean_kl"] for kl in kls)  # measured, not zero, under the gate
    assert doc["candidate"]["dtype"] == "bfloat16" and doc["candidate"]["kind"] == "native"
    assert all(doc["tasks"][t]["prompt_token_mismatch"] == 0 for t in TASKS.split(","))
    r, _ = drift(tiny_ckpt, tmp_path / "strict", "--candidate-dtype", "bfloat16", "--max-mean-kl", "1e-12")
    assert r.exit_code == 1 and "mean KL" in r.output and "--max-mean-kl 1e-12" in r.output


def perturbed(tiny: Path, dst: Path) -> Path:
    """The tiny checkpoint with noise added to one decoder layer's MLP output projection."""
    shutil.copytree(tiny, dst)
    weights = load_file(dst / "model.safetensors")
    key = "model.language_model.layers.1.mlp.down_proj.weight"
    w = weights[key]
    weights[key] = w + torch.randn(w.shape, generator=torch.Generator().manual_seed(0)) * w.std()
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_a_perturbed_layer_is_caught(tiny_ckpt: Path, tmp_path: Path):
    bad = Engine(perturbed(tiny_ckpt, tmp_path / "bad"), device="cpu", dtype="float32")
    srv = ServerThread(create_app(bad, model_name="tiny"))
    try:
        r, doc = drift(tiny_ckpt, tmp_path / "out", "--base-url", srv.url)
    finally:
        srv.stop()
    assert r.exit_code == 1, r.output
    assert "drift gate failed: synth_imageqa: top-1 agreement" in r.output
    agg = doc["tasks"]["synth_text"]
    assert agg["top1_agreement"]["mean"] < 0.9 and agg["prompt_token_mismatch"] == 0
    worst = doc["worst"]["synth_text"][0]
    assert worst["first_divergence"] is not None and worst["reference_reply"] != worst["candidate_reply"]


def test_a_server_with_another_max_pixels_is_named(tiny_ckpt: Path, engine: Engine, tmp_path: Path):
    srv = ServerThread(create_app(engine, model_name="tiny", mm_processor_kwargs={"max_pixels": 32 * 32}))
    try:
        r, doc = drift(tiny_ckpt, tmp_path, "--base-url", srv.url)
    finally:
        srv.stop()
    assert r.exit_code == 1, r.output
    assert "server preprocesses differently (pixels, frames, template)" in r.output
    agg = doc["tasks"]["synth_imageqa"]
    assert agg["prompt_token_mismatch"] == 2 and "image tokens ours" in agg["prompt_mismatch_reasons"][0]
    assert doc["tasks"]["synth_text"]["prompt_token_mismatch"] == 0  # text only: the same prompt


def test_bad_usage_is_exit_2(tiny_ckpt: Path):
    assert_clean_error(cli("drift", "--model", str(tiny_ckpt), "--task", "synth_text"), "name one candidate")
    assert_clean_error(cli("drift", "--model", str(tiny_ckpt), "--task", "synth_text", "--candidate-dtype",
                           "bfloat16", "--base-url", "http://127.0.0.1:9"), "name one candidate")
    assert_clean_error(cli("drift", "--model", str(tiny_ckpt), "--task", "synth_text", "--candidate-dtype",
                           "bfloat16", "--top-logprobs", "0"), "--top-logprobs")
    assert_clean_error(cli("drift", "--model", str(tiny_ckpt), "--task", "synth_text", "--candidate-dtype",
                           "bfloat16", "--candidate-device", "cpu", "--cuda-graph"), "need a CUDA candidate device")
    assert_clean_error(cli("drift", "--model", str(tiny_ckpt), "--task", "nope", "--candidate-dtype",
                           "bfloat16"), "nope")


def test_kl_estimate_is_a_lower_bound_exact_on_the_whole_vocabulary():
    g = torch.Generator().manual_seed(1)
    p = torch.log_softmax(torch.randn(50, generator=g, dtype=torch.float64) * 2, -1)
    q = torch.log_softmax(torch.randn(50, generator=g, dtype=torch.float64) * 2, -1)
    full = float((q.exp() * (q - p)).sum())
    assert step_kl(p.tolist(), q.tolist())["kl"] == pytest.approx(full, rel=1e-6)
    top = torch.topk(p, 5).indices
    est = step_kl(p[top].tolist(), q[top].tolist())
    assert 0 < est["kl"] <= full
    assert est["p_out"] == pytest.approx(1 - float(p[top].exp().sum()), abs=1e-9)
    assert step_kl(p[top].tolist(), p[top].tolist()) == {"kl": 0.0, "kl_topk": 0.0, "p_out": est["p_out"],
                                                        "q_out": est["p_out"]}
    assert math.isclose(step_kl([0.0], [0.0])["kl"], 0.0)


def test_token_strings_map_to_ids_through_the_tokenizer(engine: Engine):
    tok = engine.processor.tokenizer
    cand = ServerCandidate.__new__(ServerCandidate)
    cand.tokenizer, cand._by_text, cand.backend = tok, None, type("B", (), {"base_url": "http://x/v1"})()
    ids = tok.encode("Hello world")
    assert [cand.token_id({"token": f"token_id:{i}"}) for i in ids] == ids
    assert [cand.token_id({"token": tok.decode([i], skip_special_tokens=False)}) for i in ids] == ids
    with pytest.raises(Exception, match="return_tokens_as_token_ids"):
        cand.token_id({"token": "no such token here"})


def test_teacher_forcing_in_chunks_and_in_batches_scores_alike(engine: Engine, media: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    from qwen3vl_eval.model import generate as gen
    from qwen3vl_eval.model.sampling import GenerationParams

    img = [{"role": "user", "content": [{"type": "image", "image": str(media / "noise.png")},
                                        {"type": "text", "text": "What is it?"}]}]
    txt = [{"role": "user", "content": "Count to three."}]
    whole, _ = engine.score(img, [11, 12, 13], k=3, start=1, query=[[5, 6]] * 3)
    monkeypatch.setattr(gen, "SCORE_CHUNK", 4)
    chunked, _ = engine.score(img, [11, 12, 13], k=3, start=1, query=[[5, 6]] * 3)
    assert chunked.argmax == whole.argmax and chunked.top_ids == whole.top_ids
    assert chunked.target_logprob == pytest.approx(whole.target_logprob, abs=1e-5)
    assert sum(chunked.query_logprobs, []) == pytest.approx(sum(whole.query_logprobs, []), abs=1e-5)
    params = GenerationParams(max_new_tokens=2, temperature=0.0)
    batched = engine.chat([txt, img, txt], params, prompt_logprobs=2)  # each row's own media and padding
    alone = [engine.chat([c], params, prompt_logprobs=2)[0] for c in (txt, img)]
    for b, a in zip(batched[:2], alone):
        assert b.prompt_token_ids == a.prompt_token_ids and b.prompt_logprobs[0] is None
        assert [e[0] for e in b.prompt_logprobs[1:]] == pytest.approx([e[0] for e in a.prompt_logprobs[1:]], abs=1e-4)
