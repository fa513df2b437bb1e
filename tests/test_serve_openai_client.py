"""`serve` through the official `openai` Python client (the `test` extra pins it): chat and completions, whole and
streamed (server-sent events, usage in the last chunk), `n > 1`, `logprobs`/`top_logprobs` in the OpenAI
format, vLLM's `prompt_logprobs` and `return_tokens_as_token_ids`, images as data URIs, and a stream whose
client leaves is cancelled. Greedy fp32 on the tiny checkpoint: replies equal the native engine's, and the
logprobs equal the teacher-forced scores of the same tokens (`Engine.score`) to float noise."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from helpers import ServerThread, assert_clean_error, cli

from qwen3vl_eval.backends.native import Engine
from qwen3vl_eval.backends.serve import Limits, create_app
from qwen3vl_eval.model.sampling import GenerationParams

KEY = "sk-test-openai-client"
GREEDY = GenerationParams(max_new_tokens=8, temperature=0.0)
IDS = {"return_tokens_as_token_ids": True}


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[ServerThread]:
    srv = ServerThread(create_app(engine, model_name="tiny", api_key=KEY, max_batch_size=2, batch_wait_ms=20,
                                  limits=Limits(max_queue=8)))
    srv.app = srv.server.config.app
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def image_messages(media: Path) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(media / "green.png")}},
                                         {"type": "text", "text": "What colour is it?"}]}]


def native(media: Path) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "image": str(media / "green.png")},
                                         {"type": "text", "text": "What colour is it?"}]}]


def ids_of(entries) -> list[int]:
    return [int(e.token.removeprefix("token_id:")) for e in entries]


def test_chat_with_logprobs_is_the_engine_and_its_teacher_forced_scores(client, engine: Engine, media: Path):
    r = client.chat.completions.create(model="tiny", messages=image_messages(media), max_tokens=8, temperature=0,
                                       logprobs=True, top_logprobs=3, extra_body=IDS)
    ref = engine.chat([native(media)], GREEDY)[0]
    choice = r.choices[0]
    assert choice.message.content == ref.text and choice.finish_reason == ref.finish_reason
    assert r.usage.prompt_tokens == ref.prompt_tokens and r.usage.completion_tokens == len(ref.token_ids)
    content = choice.logprobs.content
    assert ids_of(content) == ref.token_ids
    scores, _ = engine.score(native(media), ref.token_ids, k=3)
    for step, entry in enumerate(content):
        assert entry.logprob == pytest.approx(scores.target_logprob[step], abs=1e-4)
        assert len(entry.top_logprobs) == 3 and entry.top_logprobs[0].token == entry.token  # greedy: the argmax
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs),
                                                                 reverse=True)
        assert ids_of(entry.top_logprobs) == scores.top_ids[step]
    plain = client.chat.completions.create(model="tiny", messages=image_messages(media), max_tokens=8,
                                           temperature=0, logprobs=True)  # token strings as text
    assert "".join(e.token for e in plain.choices[0].logprobs.content).startswith(ref.text)
    assert plain.choices[0].logprobs.content[0].top_logprobs == []


def test_prompt_logprobs_and_prompt_token_ids_as_vllm(client, engine: Engine, media: Path):
    r = client.chat.completions.create(model="tiny", messages=image_messages(media), max_tokens=2, temperature=0,
                                       extra_body={"prompt_logprobs": 2, "return_token_ids": True})
    extra = r.model_extra
    prompt_ids, plp = extra["prompt_token_ids"], extra["prompt_logprobs"]
    assert len(prompt_ids) == len(plp) == r.usage.prompt_tokens and plp[0] is None
    scores, n = engine.score(native(media), [], k=2, start=1)
    assert n == len(prompt_ids)
    for j, entry in enumerate(plp[1:]):
        actual = entry[str(prompt_ids[j + 1])]
        assert actual["logprob"] == pytest.approx(scores.target_logprob[j], abs=1e-4)
        assert actual["rank"] == scores.target_rank[j]
        assert {int(k) for k, v in entry.items() if v["rank"] <= 2} >= set(scores.top_ids[j])


def test_stream_matches_whole_reply_with_usage_last(client, media: Path):
    whole = client.chat.completions.create(model="tiny", messages=image_messages(media), max_tokens=12,
                                           temperature=0, logprobs=True, top_logprobs=1, extra_body=IDS)
    stream = client.chat.completions.create(model="tiny", messages=image_messages(media), max_tokens=12,
                                            temperature=0, logprobs=True, top_logprobs=1, extra_body=IDS,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks[:-1] if c.choices[0].delta.content]) > 1  # deltas, not one block
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == whole.choices[0].finish_reason
    logprobs = [e for c in chunks[:-1] if c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [(e.token, e.logprob) for e in logprobs] == [(e.token, e.logprob) for e in
                                                        whole.choices[0].logprobs.content]


def test_n_choices_sample_with_consecutive_seeds(client, engine: Engine):
    messages = [{"role": "user", "content": "Say something."}]
    r = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6, temperature=1.0, seed=7, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    sampled = engine.params(max_new_tokens=6, temperature=1.0)  # the checkpoint's defaults, as the server's
    want = [engine.chat([messages], sampled.with_overrides(seed=7 + i))[0].text for i in range(3)]
    assert [c.message.content for c in r.choices] == want and len(set(want)) > 1
    assert r.usage.completion_tokens == sum(len(engine.chat([messages], sampled.with_overrides(seed=7 + i))[0]
                                                .token_ids) for i in range(3))
    streamed = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6, temperature=1.0,
                                              seed=7, n=3, stream=True)
    texts = ["", "", ""]
    for chunk in streamed:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert texts == want


def test_completions_whole_streamed_and_echoed(client, engine: Engine):
    prompt = "The colour of the sky is"
    tok = engine.processor.tokenizer
    ref = engine.complete([tok.encode(prompt)], GenerationParams(max_new_tokens=5, temperature=0.0), logprobs=2)[0]
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=5, temperature=0, logprobs=2,
                                  extra_body=IDS)
    choice = r.choices[0]
    assert choice.text == ref.text and r.usage.prompt_tokens == len(tok.encode(prompt))
    assert [int(t.removeprefix("token_id:")) for t in choice.logprobs.tokens] == ref.token_ids
    assert choice.logprobs.token_logprobs == pytest.approx([lp for lp, _ in ref.logprobs], abs=1e-5)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt=prompt, max_tokens=5, temperature=0, stream=True))
    assert streamed == ref.text
    echo = client.completions.create(model="tiny", prompt=[prompt, tok.encode("Hello")], max_tokens=3,
                                     temperature=0, echo=True, logprobs=1)
    assert len(echo.choices) == 2 and echo.choices[0].text.startswith(prompt)
    assert echo.choices[0].logprobs.token_logprobs[0] is None  # the first prompt token has none
    assert len(echo.choices[0].logprobs.tokens) == len(tok.encode(prompt)) + 3 or \
        echo.choices[0].finish_reason == "stop"


def test_bad_requests_raise_the_clients_errors(client, media: Path):
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(model="tiny", messages=image_messages(media), logprobs=True,
                                       top_logprobs=50)
    with pytest.raises(openai.BadRequestError, match="context"):  # before the first token: an HTTP error
        list(client.chat.completions.create(model="tiny", messages=image_messages(media), max_tokens=10**6,
                                            stream=True))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=image_messages(media))


def test_a_stream_whose_client_leaves_is_cancelled(server: ServerThread, client):
    worker = server.app.state.worker
    before = worker.stats["cancelled"]
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Go on."}],
                                            max_tokens=3000, temperature=0, stream=True,
                                            extra_body={"ignore_eos": True})
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.monotonic() + 60
    while worker.stats["cancelled"] == before or worker.stats["running"]:
        assert time.monotonic() < deadline, "the stream's generation was not cancelled"
        time.sleep(0.05)
    r = httpx.get(server.url + "/health", timeout=10).json()
    assert r["running"] == 0 and r["queued"] == 0


def test_mm_processor_kwargs_per_request_and_per_server(client, engine: Engine, media: Path):
    big = client.chat.completions.create(model="tiny", messages=image_messages(media), max_tokens=1)
    small = client.chat.completions.create(model="tiny", messages=image_messages(media), max_tokens=1,
                                           extra_body={"mm_processor_kwargs": {"max_pixels": 32 * 32}})
    conv = native(media)
    conv[0]["content"][0]["max_pixels"] = 32 * 32
    assert small.usage.prompt_tokens == engine.chat([conv], GREEDY)[0].prompt_tokens < big.usage.prompt_tokens
    with pytest.raises(openai.BadRequestError, match="unknown key 'size'"):
        client.chat.completions.create(model="tiny", messages=image_messages(media), max_tokens=1,
                                       extra_body={"mm_processor_kwargs": {"size": 3}})
    srv = ServerThread(create_app(engine, model_name="tiny", mm_processor_kwargs={"max_pixels": 32 * 32}))
    try:
        other = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        r = other.chat.completions.create(model="tiny", messages=image_messages(media), max_tokens=1)
        assert r.usage.prompt_tokens == small.usage.prompt_tokens
        assert other.models.list().data[0].model_extra["mm_processor_kwargs"] == {"max_pixels": 1024}
    finally:
        srv.stop()


def test_stream_with_a_stop_string_ends_where_the_whole_reply_does(client):
    messages = [{"role": "user", "content": "Tell me a story."}]
    full = client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, temperature=0)
    text = full.choices[0].message.content
    stop = text[len(text) // 2: len(text) // 2 + 3]
    assert stop.strip()
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, temperature=0, stop=[stop])
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=16, temperature=0, stop=[stop], stream=True) if c.choices)
    assert streamed == whole.choices[0].message.content and stop not in streamed
    assert whole.choices[0].finish_reason == "stop"


def test_serve_command_checks_its_media_defaults_and_choice_cap(tiny_ckpt: Path):
    serve = ("serve", "--model", str(tiny_ckpt), "--port", "0")
    assert_clean_error(cli(*serve, "--mm-processor-kwargs", "{bad"), "--mm-processor-kwargs")
    assert_clean_error(cli(*serve, "--mm-processor-kwargs", '{"size": 3}'), "--mm-processor-kwargs: unknown key 'size'")
    assert_clean_error(cli(*serve, "--max-n", "0"), "--max-n")
