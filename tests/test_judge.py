"""LLM-judged metrics (issue #16): judge prompts and their readers, the `judge:` block, the judge cache, and
`score` judged by a scripted fake judge over HTTP (loopback): judged values worked out by hand, per-sample judge
records, zero requests on a rerun, timeouts and junk as per-sample failures, judged metrics absent without a
judge. `run` and `serve` as the judge: test_judge_run.py."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import FIXTURES, assert_clean_error, cli, write_preds

from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.judge import Judge
from qwen3vl_eval.eval.judge_cache import JudgeCache, cache_key
from qwen3vl_eval.eval.judge_prompts import JUDGE_PROMPTS, UNREAD
from qwen3vl_eval.eval.results import score_predictions
from qwen3vl_eval.eval.sample_log import read_records
from qwen3vl_eval.eval.task import load_registry, parse_task

REGISTRY = load_registry()


class FakeJudge:
    """A loopback chat-completions server whose reply to each request is `answer(user message text)`: a string,
    or ("sleep", s) to answer late. Counts and keeps the requests."""

    def __init__(self, answer: Callable[[str], object]) -> None:
        self.answer = answer
        self.seen: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.seen.append(body)
                reply = fake.answer(body["messages"][0]["content"])
                if isinstance(reply, tuple):
                    time.sleep(reply[1])
                    reply = "CORRECT"
                data = json.dumps({"choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": reply}}],
                                   "usage": {"prompt_tokens": 9, "completion_tokens": 1}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def grader(prompt: str) -> str:
    """A verdict judge: CORRECT when the reply holds the reference answer or 25/2."""
    ref, reply = between(prompt, "Reference answer:\n", "\n\nReply:"), between(prompt, "Reply:\n", "\n\nFind")
    return "CORRECT" if ref in reply or "25/2" in reply else "INCORRECT"


def matcher(prompt: str) -> str:
    """An option-matching judge: the letter of the one option whose text is in the reply, else X."""
    options = dict(re.findall(r"^([A-D])\. (.+)$", between(prompt, "Options:\n", "\n\nReply:"), re.M))
    reply = between(prompt, "Reply:\n", "\n\nIf the reply").lower()
    hits = [k for k, v in options.items() if re.search(rf"\b{re.escape(v.lower())}\b", reply)]
    return hits[0] if len(hits) == 1 else "X"


@pytest.fixture
def judge_server(request) -> Iterator[FakeJudge]:
    srv = FakeJudge(getattr(request, "param", grader))
    yield srv
    srv.stop()


def judged_score(tmp_path: Path, task: str, preds: dict[str, str], url: str | None, out: str,
                 model: str = "fake-judge") -> dict:
    args = ["score", "--task", task, "--predictions", write_preds(tmp_path / f"{out}.jsonl", preds),
            "--data", FIXTURES[task], "--output", tmp_path / out]
    if url:
        args += ["--judge-base-url", url, "--judge-model", model, "--judge-cache", tmp_path / "cache"]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    return json.loads((tmp_path / out / task / "results.json").read_text())  # the run folder holds <task>/


MMMU = {"validation_Accounting_1": "B", "validation_Art_Theory_2": "A",
        "validation_Math_3": "Half of 5 times 5, so the area is 25/2."}


def test_mmmu_open_questions_judged_and_cached(judge_server, tmp_path):
    res = judged_score(tmp_path, "mmmu_val", MMMU, judge_server.url, "one")
    m = res["metrics"]
    # by hand: B right, A wrong (gold C); the open reply "25/2" (gold 12.5) is wrong by the MMMU rules,
    # right for the judge, which sees only the open question
    assert m["accuracy"] == pytest.approx(100 / 3) and m["accuracy_judged"] == pytest.approx(200 / 3)
    assert len(judge_server.seen) == 1 and judge_server.seen[0]["model"] == "fake-judge"
    assert judge_server.seen[0]["temperature"] == 0.0 and judge_server.seen[0]["max_tokens"] == 8
    assert not {"top_k", "repetition_penalty"} & set(judge_server.seen[0])  # OpenAI's API rejects them
    j = res["judge"]
    assert (j["configured"], j["model"], j["prompt"], j["n_judged"], j["n_cached"], j["n_requests"], j["n_failed"],
            j["n_headline"]) == (True, "fake-judge", "open_answer_verdict@1", 1, 0, 1, 0, 2)
    assert res["versions"]["judge_prompt"] == "open_answer_verdict@1"
    recs = {r["id"]: r for r in read_records(tmp_path / "one" / "mmmu_val" / "samples.jsonl")}
    math = recs["validation_Math_3"]
    assert math["accuracy"] == 0.0 and math["accuracy_judged"] == 1.0 and math["scores"]["accuracy_judged"] == 1.0
    assert math["judge"]["source"] == "judge" and math["judge"]["output"] == "CORRECT"
    assert math["judge"]["cached"] is False and math["judge"]["value"] is True
    assert "Reference answer:\n12.5" in math["judge"]["input"] and "25/2" in math["judge"]["input"]
    assert recs["validation_Accounting_1"]["judge"] == {"source": "headline"}
    report = (tmp_path / "one" / "mmmu_val" / "report.md").read_text()
    assert "| accuracy_judged |" in report and "judge `fake-judge`, prompt open_answer_verdict@1" in report

    again = judged_score(tmp_path, "mmmu_val", MMMU, judge_server.url, "two")  # the same replies: all cached
    assert len(judge_server.seen) == 1 and again["metrics"] == m
    assert (again["judge"]["n_cached"], again["judge"]["n_requests"]) == (1, 0)
    recs = {r["id"]: r for r in read_records(tmp_path / "two" / "mmmu_val" / "samples.jsonl")}
    assert recs["validation_Math_3"]["judge"]["cached"] is True


@pytest.mark.parametrize("judge_server", [matcher], indirect=True)
def test_videomme_judge_reads_only_what_the_rules_cannot(judge_server, tmp_path):
    preds = {"001-1": "A", "001-2": "It moves to the right side of the frame", "002-1": "I cannot tell."}
    res = judged_score(tmp_path, "videomme", preds, judge_server.url, "out")
    # by hand: "A" is read by the headline rule (right); the other two go to the judge: "right" is option B
    # (gold B), "cannot tell" is no option (X, gold C)
    assert res["metrics"]["accuracy"] == pytest.approx(100 / 3)
    assert res["metrics"]["accuracy_judged"] == pytest.approx(200 / 3)
    j = res["judge"]
    assert (j["n_rules"], j["n_judged"], j["n_failed"], j["rules"]) == (1, 2, 0, "lmms_mcq")
    assert len(judge_server.seen) == 2
    recs = {r["id"]: r for r in read_records(tmp_path / "out" / "videomme" / "samples.jsonl")}
    assert recs["001-1"]["judge"] == {"source": "rules", "rules": "lmms_mcq", "value": "A"}
    assert recs["001-2"]["judge"]["value"] == "B" and recs["002-1"]["judge"]["value"] is None
    assert recs["002-1"]["judge"]["parsed"] is True and recs["002-1"]["accuracy_judged"] == 0.0
    assert res["breakdowns"]["duration"]["short"]["accuracy_judged"] is not None


def test_without_a_judge_judged_metrics_are_absent_and_report_says_why(tmp_path):
    res = judged_score(tmp_path, "mmmu_val", MMMU, None, "out")
    assert "accuracy_judged" not in res["metrics"] and "accuracy_judged" not in res["higher_is_better"]
    assert res["judge"]["configured"] is False and "--judge-base-url" in res["judge"]["reason"]
    assert all("accuracy_judged" not in r and "judge" not in r
               for r in read_records(tmp_path / "out" / "mmmu_val" / "samples.jsonl"))
    report = (tmp_path / "out" / "mmmu_val" / "report.md").read_text()
    assert "`accuracy_judged`: absent (not zero): no judge configured" in report
    # a task without a judge: block has no judge block at all
    res = judged_score(tmp_path, "gsm8k", {}, None, "gsm")
    assert "judge" not in res


def test_timeouts_and_junk_are_per_sample_failures_and_not_cached(tmp_path):
    spec = REGISTRY["videomme"]
    samples = load_samples(spec, str(FIXTURES["videomme"]))
    preds = write_preds(tmp_path / "p.jsonl", {"001-1": "moving to the left, I think", "001-2": "to the right",
                                               "002-1": "blue is the colour"})
    # the first reply's question times out; the second gets junk back; the third a letter
    script = {"left": ("sleep", 2.0), "right": "the the the <|im_end|>", "blue": "C"}
    fake = FakeJudge(lambda p: next(v for k, v in script.items() if k in between(p, "Reply:\n", "\n\nIf")))
    try:
        judge = Judge(fake.url, model="fake", cache=tmp_path / "cache", timeout=0.5, retries=0)
        res = score_predictions(spec, samples, preds, tmp_path / "a", judge=judge)
        j = res["judge"]
        assert (j["n_judged"], j["n_failed"], j["n_request_errors"], j["n_unread"]) == (3, 2, 1, 1)
        assert "timed out" in j["first_error"]
        recs = {r["id"]: r for r in read_records(tmp_path / "a" / "samples.jsonl")}
        assert "timed out" in recs["001-1"]["judge"]["error"] and recs["001-1"]["judge"]["output"] is None
        assert recs["001-2"]["judge"]["parsed"] is False and "not read" in recs["001-2"]["judge"]["error"]
        assert recs["001-2"]["judge"]["output"] == "the the the <|im_end|>"
        assert [recs[k]["accuracy_judged"] for k in ("001-1", "001-2", "002-1")] == [0.0, 0.0, 1.0]
        assert res["metrics"]["accuracy_judged"] == pytest.approx(100 / 3)
        n = len(fake.seen)
        script["left"] = "A"  # the server recovers: only the timed-out question is asked again
        res = score_predictions(spec, samples, preds, tmp_path / "b", judge=judge)
        assert len(fake.seen) == n + 1 and res["judge"]["n_cached"] == 2 and res["judge"]["n_failed"] == 1
        assert res["metrics"]["accuracy_judged"] == pytest.approx(200 / 3)
        judge.close()
    finally:
        fake.stop()


def test_extraction_seam_rules_first_then_judge_then_scorer(tmp_path):
    """The MathVista shape (rules extractor returning None, `math_answer_extract`, the task's scorer) on ChartQA."""
    import yaml

    raw = yaml.safe_load(Path(REGISTRY["chartqa_test"].source_file).read_text())
    raw["judge"] = {"prompt": "math_answer_extract", "model": "m", "rules": "last_number", "scorer": "relaxed_accuracy"}
    spec = parse_task(raw, "chartqa_judged.yaml")
    samples = load_samples(spec, str(FIXTURES["chartqa_test"]))
    preds = write_preds(tmp_path / "p.jsonl", {"0": "There are 14 items.", "1": "zero point five seven",
                                               "2": "The lowest is Yemen", "3": "I do not know"})
    extract = {"zero point": "0.57", "Yemen": "Yemen", "do not know": "NONE"}
    fake = FakeJudge(lambda p: next(v for k, v in extract.items() if k in p.rsplit("Reply: ", 1)[1]))
    try:
        judge = Judge(fake.url, cache=tmp_path / "cache")
        res = score_predictions(spec, samples, preds, tmp_path / "o", judge=judge)
        judge.close()
    finally:
        fake.stop()
    # by hand: 14 read by the rule (gold 14); the judge extracts 0.57 (gold 0.57) and Yemen (gold Yemen); NONE
    # for the last (gold 23.5%): 3 of 4
    assert res["metrics"]["relaxed_accuracy_judged"] == 75.0 and res["judge"]["model"] == "m"
    assert (res["judge"]["n_rules"], res["judge"]["n_judged"], res["judge"]["n_failed"]) == (1, 3, 0)
    assert [p["model"] for p in fake.seen] == ["m"] * 3 and all(p["max_tokens"] == 64 for p in fake.seen)


def test_judge_flags_usage_errors(tmp_path, monkeypatch):
    base = ["score", "--task", "mmmu_val", "--predictions", write_preds(tmp_path / "p.jsonl", MMMU),
            "--data", FIXTURES["mmmu_val"], "--output", tmp_path / "o"]
    assert_clean_error(cli(*base, "--judge-model", "m"), "--judge-model", "--judge-base-url")
    assert_clean_error(cli(*base, "--judge-base-url", "ftp://x"), "http(s)")
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    assert_clean_error(cli(*base, "--judge-base-url", "http://127.0.0.1:9", "--judge-api-key-env",
                           "NO_SUCH_JUDGE_KEY"), "NO_SUCH_JUDGE_KEY")
    r = cli("score", "--task", "gsm8k", "--predictions", write_preds(tmp_path / "g.jsonl", {}), "--data",
            FIXTURES["gsm8k"], "--output", tmp_path / "g", "--judge-base-url", "http://127.0.0.1:9")
    assert_clean_error(r, "gsm8k has a judge: block")


def test_tasks_json_names_each_judged_metric():
    rows = {t["task"]: t for t in json.loads(cli("tasks", "--json").stdout)}
    assert rows["mmmu_val"]["judge"] == {"metrics": ["accuracy_judged"], "prompt": "open_answer_verdict@1",
                                         "default_model": "gpt-4o-mini", "samples": "open"}
    assert rows["videomme"]["judge"]["prompt"] == "option_match@1" and rows["gsm8k"]["judge"] is None


# ---------------------------------------------------------------- prompts, YAML, cache

def test_judge_prompt_readers():
    mc = SimpleNamespace(choices=["red", "green", "blue"], question="q", target="B")
    verdict, letter, text = (JUDGE_PROMPTS[n] for n in ("open_answer_verdict", "option_match", "math_answer_extract"))
    cases = [(verdict, "CORRECT", True), (verdict, "**Incorrect.**", False), (verdict, "Verdict: correct", True),
             (verdict, "<think>it is 5</think>\n\nCORRECT", True), (verdict, "correctish", UNREAD),
             (verdict, "The reply is correct", UNREAD), (verdict, "", UNREAD),
             (letter, "B", "B"), (letter, "(c)", "C"), (letter, "X", None), (letter, "D", UNREAD),
             (letter, "B or C", UNREAD), (letter, "Answer: A", "A"),
             (text, "5", "5"), (text, "Extracted answer: [3, 7]", "[3, 7]"), (text, "NONE", None),
             (text, "5\nbecause 2+3", UNREAD)]
    for prompt, reply, want in cases:
        assert prompt.read(reply, mc) == want if want is not UNREAD else prompt.read(reply, mc) is UNREAD, reply
    rendered = letter.render(mc, "  blue  ")
    assert "A. red\nB. green\nC. blue" in rendered and "Reply:\nblue\n" in rendered and "A, B, C, or X" in rendered
    assert text.render(mc, "x").endswith("Question: q\nReply: x\nExtracted answer:")  # the question holds its choices
    open_q = SimpleNamespace(choices=[], question="Area?", target={"answer": "12.5", "choices": []})
    assert "Reference answer:\n12.5\n" in verdict.render(open_q, "12.5")
    assert len({p.hash for p in JUDGE_PROMPTS.values()}) == len(JUDGE_PROMPTS)


@pytest.mark.parametrize("block,needle", [
    ("[x]", "field judge must be a mapping"), ("{prompt: option_match}", "with prompt and model"),
    ("{prompt: nope, model: m}", "judge.prompt: unknown 'nope'"),
    ("{prompt: option_match, model: m, samples: some}", "judge.samples"),
    ("{prompt: option_match, model: m, rules: nope}", "judge.rules: unknown"),
    ("{prompt: option_match, model: m, metrics: [nope]}", "judge.metrics: unknown"),
    ("{prompt: option_match, model: m, extra: 1}", "field judge must be"),
])
def test_judge_block_errors_name_the_field(block, needle):
    import yaml

    raw = {"task": "t", "version": 1, "data": {"path": "x"}, "adapter": "videomme", "prompt": "mcq_qwen3vl",
           "parser": "lmms_mcq", "scorer": "accuracy_nocase", "metrics": ["accuracy"], "judge": yaml.safe_load(block)}
    with pytest.raises(TaskError, match=re.escape(needle)):
        parse_task(raw, "tasks/t.yaml")


def test_cache_is_keyed_atomic_and_survives_damage(tmp_path):
    cache = JudgeCache(tmp_path)
    k = cache_key("m", "p@1", "h", "input", 8)
    others = [cache_key("m2", "p@1", "h", "input", 8), cache_key("m", "p@2", "h", "input", 8),
              cache_key("m", "p@1", "h", "input!", 8), cache_key("m", "p@1", "h2", "input", 8)]
    assert len({k, *others}) == 5 and cache.get(k) is None
    threads = [threading.Thread(target=cache.put, args=(k, "CORRECT", {"n": i})) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.get(k) == "CORRECT" and not list(tmp_path.rglob("*.tmp"))
    cache.path(k).write_text('{"key": "')  # a torn or damaged entry is a miss, then rewritten
    assert cache.get(k) is None
    cache.put(k, "INCORRECT", {})
    assert cache.get(k) == "INCORRECT"


# ---------------------------------------------------------------- `serve` as the judge (end to end, offline)

def test_served_tiny_checkpoint_as_judge_junk_is_a_per_sample_failure(tmp_path):
    from helpers import serve_process

    with serve_process("tiny", "--served-model-name", "tiny-judge", "--device", "cpu") as url:
        res = judged_score(tmp_path, "mmmu_val", MMMU, url + "/v1", "one", "tiny-judge")
        again = judged_score(tmp_path, "mmmu_val", MMMU, url + "/v1", "two", "tiny-judge")
    j = res["judge"]
    # a random tiny model answers junk: the open question's judgement is unread, scored 0, and the run goes on
    assert (j["model"], j["n_judged"], j["n_requests"], j["n_unread"], j["n_failed"]) == ("tiny-judge", 1, 1, 1, 1)
    assert res["metrics"]["accuracy_judged"] == pytest.approx(100 / 3)  # the multiple-choice B stays right
    rec = {r["id"]: r for r in read_records(tmp_path / "one" / "mmmu_val" / "samples.jsonl")}["validation_Math_3"]
    assert rec["judge"]["parsed"] is False and isinstance(rec["judge"]["output"], str)
    assert (again["judge"]["n_cached"], again["judge"]["n_requests"]) == (1, 0)  # junk is cached too


# ---------------------------------------------------------------- `run` judged end to end (tiny model, fake judge)

def test_run_judges_at_scoring_and_resume_asks_nothing(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "data"))
    from make_fixtures import make_videos

    videos = make_videos(tmp_path / "videos")
    fake = FakeJudge(lambda p: "B")  # names option B for every reply the rule cannot read
    out = tmp_path / "run"
    args = ["run", "--task", "videomme", "--model", "tiny", "--data", FIXTURES["videomme"], "--media-root", videos,
            "--max-new-tokens", "4", "--device", "cpu", "--output", out, "--judge-base-url", fake.url,
            "--judge-model", "fake-judge", "--judge-cache", tmp_path / "cache"]
    try:
        r = cli(*args)
        assert r.exit_code == 0, r.output
        res = json.loads((out / "videomme" / "results.json").read_text())
        recs = read_records(out / "videomme" / "samples.jsonl")
        judged = [x for x in recs if x["judge"]["source"] == "judge"]
        assert res["judge"]["n_judged"] == len(judged) == len(fake.seen) and res["judge"]["n_rules"] + len(judged) == 3
        want = [x["accuracy"] if x["judge"]["source"] == "rules" else float(x["target"] == "B") for x in recs]
        assert res["metrics"]["accuracy_judged"] == pytest.approx(100 * sum(want) / 3)
        assert all(x["judge"]["output"] == "B" and "\nOptions:\nA. " in x["judge"]["input"] for x in judged)
        n = len(fake.seen)
        r = cli(*args, "--resume")  # nothing left to generate; the judgements come from the cache
        assert r.exit_code == 0, r.output
        again = json.loads((out / "videomme" / "results.json").read_text())
        assert len(fake.seen) == n and again["judge"]["n_requests"] == 0
        assert again["judge"]["n_cached"] == len(judged) and again["metrics"] == res["metrics"]
    finally:
        fake.stop()


def test_unwritable_cache_warns_once_and_judges_anyway(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = JudgeCache(blocker / "cache")  # under a file: every write fails
    for i in range(3):
        cache.put(cache_key("m", "p@1", "h", str(i), 8), "CORRECT", {})
    assert cache.get(cache_key("m", "p@1", "h", "0", 8)) is None
    assert sum("not written" in r.message for r in caplog.records) == 1


def test_a_judge_that_is_down_fails_the_rest_at_once(tmp_path):
    down = FakeJudge(lambda p: "X")
    url = down.url
    down.stop()  # nothing listens there any more: every request is refused
    judge = Judge(url, model="m", cache=tmp_path / "cache", retries=0, concurrency=2, max_failures_in_a_row=3)
    sample = SimpleNamespace(choices=["a", "b"], question="q", target="A")
    prompt = JUDGE_PROMPTS["option_match"]
    answers = judge.ask("m", prompt, [prompt.render(sample, f"reply {i}") for i in range(40)])
    assert all(a.error for a in answers) and 3 <= judge.n_requests <= 4  # the third failure stops the asking
    assert sum(a.error.startswith("not asked: ") for a in answers) == 40 - judge.n_requests
    judge.close()
