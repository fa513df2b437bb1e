"""`score`: oracle prediction files score 100 and crafted wrong ones a known value, for every synthetic task
and every real-schema fixture; bad prediction files are one-line errors with exit code 2."""

import json

import pytest
from helpers import FIXTURES, REAL, SYNTH, cli, oracle_prediction, score, write_preds

from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.task import load_registry

REGISTRY = load_registry()


@pytest.mark.parametrize("task", SYNTH + REAL)
def test_oracle_scores_100_and_half_wrong_scores_half_or_so(task, tmp_path):
    spec = REGISTRY[task]
    samples = load_samples(spec, str(FIXTURES[task]) if task in FIXTURES else None)
    oracle = {s.id: oracle_prediction(spec.scorer, s.target) for s in samples}
    res = score(task, write_preds(tmp_path / "oracle.jsonl", oracle), tmp_path / "oracle")
    assert res["n_samples"] == len(samples) and res["n_errors"] == 0
    for m in spec.metrics:
        assert res["metrics"][m] == pytest.approx(100.0), m
    assert res["metrics"]["parse_failure_rate"] == 0.0
    assert res["versions"]["task"] == spec.version and res["versions"]["prompt_hash"]

    # first k right, the rest an unparsable or wrong reply: every metric is 100 * k / n
    n, k = len(samples), len(samples) // 2
    wrong = {s.id: (oracle[s.id] if i < k else "???") for i, s in enumerate(samples)}
    res = score(task, write_preds(tmp_path / "wrong.jsonl", wrong), tmp_path / "wrong")
    for m in spec.metrics:
        assert res["metrics"][m] == pytest.approx(100.0 * k / n), m
    if spec.parser in ("mc_letter", "time_span", "bbox_qwen3vl", "gsm8k", "lmms_mcq", "charades_lmms",
                       "refcoco_top1", "gsm8k_lm_eval"):
        assert res["metrics"]["parse_failure_rate"] == pytest.approx(100.0 * (n - k) / n)
    lines = [json.loads(x) for x in (tmp_path / "wrong" / task / "samples.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [s.id for s in samples]
    assert {"id", "prompt", "prediction", "prediction_answer", "parsed_prediction", "target", "scores",
            "error"} <= set(lines[0])
    assert not {"answer", "extracted"} & set(lines[0])  # the old names, easy to read as the gold


def test_known_wrong_values(tmp_path):
    # synth_text: 5 questions; two right, one wrong letter, one unparsable, one missing
    samples = load_samples(REGISTRY["synth_text"])
    wrong_letter = "B" if samples[2].target != "B" else "C"
    preds = {samples[0].id: f"Answer: {samples[0].target}", samples[1].id: f"({samples[1].target})",
             samples[2].id: wrong_letter, samples[3].id: "I cannot tell"}
    res = score("synth_text", write_preds(tmp_path / "p.jsonl", preds), tmp_path / "o")
    # the missing one counts as wrong and as a parse failure (score --missing wrong, the default)
    assert res["n_samples"] == 5 and res["n_missing"] == 1 and res["n_errors"] == 0
    # headline = lm-eval mmlu_generative: "Answer: X" is not the letter; flexible reads it
    assert res["metrics"]["accuracy"] == pytest.approx(20.0)
    assert res["metrics"]["accuracy_flexible"] == pytest.approx(40.0)
    assert res["metrics"]["parse_failure_rate"] == pytest.approx(20.0)
    assert res["metrics"]["parse_failure_rate_flexible"] == pytest.approx(40.0)

    # synth_temporal_grounding: targets [1,3], [2,6], [4.5,7.5]
    preds = {"0": "The event happens in 2 - 3 seconds.",  # IoU 0.5
             "1": "from 00:02 to 00:06",  # IoU 1
             "2": "at 7.5 - 4.5 s"}  # reversed, IoU 1
    res = score("synth_temporal_grounding", write_preds(tmp_path / "t.jsonl", preds), tmp_path / "t")
    m = res["metrics"]
    assert (m["r1@0.3"], m["r1@0.5"], m["r1@0.7"]) == pytest.approx((100.0, 100.0, 200 / 3))
    assert m["miou"] == pytest.approx(250 / 3)

    # reasoning before </think> is stripped before scoring and kept in the log
    res = score("synth_text", write_preds(tmp_path / "r.jsonl",
                                          {samples[0].id: f"<think>maybe A or B</think>{samples[0].target}"}),
                tmp_path / "r")
    assert res["metrics"]["accuracy"] == 20.0  # 1 of 5: the other four have no prediction
    line = json.loads((tmp_path / "r" / "synth_text" / "samples.jsonl").read_text().splitlines()[0])
    assert line["accuracy"] == 1.0 and line["reasoning"] == "maybe A or B"
    assert line["prediction_answer"] == samples[0].target


def test_run_samples_file_scores_again(tmp_path):
    samples = load_samples(REGISTRY["synth_text"])
    oracle = {s.id: oracle_prediction("accuracy", s.target) for s in samples}
    score("synth_text", write_preds(tmp_path / "p.jsonl", oracle), tmp_path / "a")
    res = score("synth_text", tmp_path / "a" / "synth_text" / "samples.jsonl", tmp_path / "b")
    assert res["metrics"]["accuracy"] == 100.0


@pytest.mark.parametrize("content,needle", [
    ('{"id": "0", "prediction": "A"}\nnot json\n', "p.jsonl:2"),
    ('{"id": "0"}\n', "field prediction missing"),
    ('{"prediction": "A"}\n', "field id missing"),
    ('{"id": "0", "prediction": 3}\n', "must be a string"),
    ('{"id": "0", "prediction": "A"}\n{"id": "0", "prediction": "B"}\n', "duplicate id"),
    ('{"id": "nope", "prediction": "A"}\n', "not in task synth_text"),
])
def test_bad_prediction_files_exit_2(tmp_path, content, needle):
    p = tmp_path / "p.jsonl"
    p.write_text(content)
    r = cli("score", "--task", "synth_text", "--predictions", p, "--output", tmp_path / "o")
    assert r.exit_code == 2
    assert needle in r.output and "Traceback" not in r.output


def test_score_usage_errors(tmp_path):
    r = cli("score", "--task", "smoke", "--predictions", str(tmp_path / "x.jsonl"))
    assert r.exit_code == 2 and "one task" in r.output
    r = cli("score", "--task", "synth_text", "--predictions", str(tmp_path / "x.jsonl"))
    assert r.exit_code == 2 and "x.jsonl" in r.output
