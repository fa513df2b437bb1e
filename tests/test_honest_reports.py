"""Honest numbers (issue #15): one denominator for every metric, missing predictions scored and named, and a
samples.jsonl whose fields say what they are (a prompt, the model's side apart from the gold)."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

from helpers import FakeBackend, cli, oracle_prediction, write_preds

from qwen3vl_eval.eval.aggregate import DENOMINATOR_RULE, exceptions, higher_is_better, record_value
from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.prompts import PROMPTS
from qwen3vl_eval.eval.runner import run_task
from qwen3vl_eval.eval.sample_log import read_field, read_records
from qwen3vl_eval.eval.task import load_registry

REGISTRY = load_registry()
PARAMS = SimpleNamespace(max_new_tokens=8, temperature=0.0)
README = Path(__file__).resolve().parents[1] / "README.md"


def test_an_errored_sample_counts_in_every_denominator(tmp_path):
    """4 grounding samples: two right, one reply without a box, one the backend rejects (an error). Worked by
    hand: acc@0.5 = 2/4, and parse_failure_rate = (the boxless reply + the error)/4, not 1/3."""
    spec = REGISTRY["synth_grounding"]
    samples = load_samples(spec)[:4]
    text = {s.id: PROMPTS[spec.prompt].text(s) for s in samples}
    assert len(set(text.values())) == 4
    replies = {text[s.id]: oracle_prediction(spec.scorer, s.target) for s in samples[:2]}
    replies[text[samples[2].id]] = "I cannot tell"
    backend = FakeBackend(lambda p: replies.get(p, "?"), reject=lambda p: "rejected" if p == text[samples[3].id]
                          else None)
    res = run_task(spec, samples, backend, tmp_path, PARAMS, batch_size=1)
    assert (res["n_samples"], res["n_errors"], res["n_parse_failures"]) == (4, 1, 1)
    m = res["metrics"]
    assert m["acc@0.5"] == 50.0 and m["acc@0.5_flexible"] == 50.0
    assert m["parse_failure_rate"] == 50.0 and m["parse_failure_rate_flexible"] == 50.0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["scoring"] == {"denominator": "n_samples", "rule": DENOMINATOR_RULE, "exceptions": {}}
    assert saved["higher_is_better"]["parse_failure_rate"] is False and saved["higher_is_better"]["miou"] is True
    assert f"Denominator: {DENOMINATOR_RULE}." in (tmp_path / "report.md").read_text()
    # the per-sample values behind those numbers, the same rule
    recs = read_records(tmp_path / "samples.jsonl")
    assert [record_value("parse_failure_rate", r) for r in recs] == [0.0, 0.0, 1.0, 1.0]
    assert [record_value("acc@0.5", r) for r in recs] == [1.0, 1.0, 0.0, 0.0]


def test_reference_rules_that_aggregate_otherwise_are_named():
    """MLVU's macro mean leaves failed samples out of every group: results.json says so instead of claiming the
    one rule for it."""
    got = exceptions(["m_avg", "mvbench_accuracy", "accuracy", "acc@0.5_flexible", "parse_failure_rate"])
    assert list(got) == ["m_avg", "mvbench_accuracy"]
    assert "failed samples without scores count in no group" in got["m_avg"]
    assert "unanswered" in got["mvbench_accuracy"]


def test_metric_directions_are_one_table():
    assert not higher_is_better("parse_failure_rate") and not higher_is_better("parse_failure_rate_flexible")
    assert higher_is_better("accuracy") and higher_is_better("miou_flexible") and higher_is_better("judge_score")


def _score(tmp_path: Path, preds: dict[str, str], out: str, *extra: str):
    r = cli("score", "--task", "synth_text", "--predictions", write_preds(tmp_path / f"{out}.jsonl", preds),
            "--output", tmp_path / out, *extra)
    assert r.exit_code == 0, r.output
    task = tmp_path / out / "synth_text"  # score lays its --output out as run does
    return r, json.loads((task / "results.json").read_text()), (task / "report.md").read_text()


def test_missing_predictions_count_as_wrong_and_are_named(tmp_path):
    samples = load_samples(REGISTRY["synth_text"])
    ids = [s.id for s in samples]
    one = {ids[0]: oracle_prediction("accuracy", samples[0].target)}
    r, res, report = _score(tmp_path, one, "wrong")
    assert res["n_samples"] == 5 and res["n_missing"] == 4 and res["n_errors"] == 0
    assert res["metrics"]["accuracy"] == 20.0 and res["metrics"]["parse_failure_rate"] == 80.0
    assert res["missing"]["policy"] == "wrong" and res["missing"]["first_ids"] == ids[1:5]
    assert "WARNING: 4 of 5 task samples have no prediction and count as wrong" in r.output
    assert ", ".join(ids[1:5]) in r.output
    assert report.startswith("# synth_text\n\n**WARNING: 4 of 5 task samples have no prediction")
    assert "- samples: 5 (errors 0, missing 4, " in report
    summary = json.loads((tmp_path / "wrong" / "summary.json").read_text())  # score writes the run summary too
    assert summary["tasks"][0]["n_missing"] == 4 and summary["tasks"][0]["value"] == 20.0
    recs = read_records(tmp_path / "wrong" / "synth_text" / "samples.jsonl")
    assert [r.get("missing", False) for r in recs] == [False, True, True, True, True]
    assert all(r["error"].startswith("missing: ") and r["prediction"] is None for r in recs[1:])
    # scoring that log again keeps the missing ones missing
    again = cli("score", "--task", "synth_text", "--predictions", tmp_path / "wrong" / "synth_text" / "samples.jsonl",
                "--output", tmp_path / "again")
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again" / "synth_text" / "results.json").read_text())["n_missing"] == 4


def test_missing_predictions_skipped_only_when_asked_and_loudly(tmp_path):
    samples = load_samples(REGISTRY["synth_text"])
    one = {samples[0].id: oracle_prediction("accuracy", samples[0].target)}
    r, res, report = _score(tmp_path, one, "skip", "--missing", "skip")
    assert res["n_samples"] == 1 and res["n_missing"] == 4 and res["metrics"]["accuracy"] == 100.0
    assert res["missing"]["policy"] == "skip" and res["config"]["missing"] == "skip"
    for text in (r.output, report):
        assert "LEFT OUT (--missing skip): the metrics cover 1 samples, not the whole task" in text
    bad = cli("score", "--task", "synth_text", "--predictions", tmp_path / "skip.jsonl", "--output",
              tmp_path / "bad", "--missing", "maybe")
    assert bad.exit_code == 2 and "--missing maybe" in bad.output


def _run(task: str, tmp_path: Path) -> list[dict]:
    spec = REGISTRY[task]
    samples = load_samples(spec)[:2]
    table = {PROMPTS[spec.prompt].text(s): oracle_prediction(spec.scorer, s.target) for s in samples}
    run_task(spec, samples, FakeBackend(table), tmp_path / task, PARAMS)
    return read_records(tmp_path / task / "samples.jsonl")


def test_samples_log_has_the_prompt_and_names_the_model_side(tmp_path):
    image = _run("synth_imageqa", tmp_path)[0]
    assert image["prompt"].startswith("<image 0>\nWhat color is the rectangle?")
    assert image["media"] == {"<image 0>": "img0.png"}  # a reference: the file name in the dataset
    assert "bytes" not in json.dumps(image) and len(json.dumps(image)) < 2000
    video = _run("synth_videoqa", tmp_path)[0]
    assert video["prompt"].startswith("<video 0>\nQuestion: ") and video["media"]["<video 0>"].endswith(".mp4")
    for rec in (image, video):
        assert rec["prediction_answer"] == rec["prediction"] and rec["parsed_prediction"] is not None
        assert "target" in rec and not {"answer", "extracted", "extracted_flexible"} & set(rec)


def test_old_field_names_are_still_read():
    old = {"id": "1", "answer": "B", "extracted": "B", "extracted_flexible": "b"}
    assert read_field(old, "parsed_prediction") == "B" and read_field(old, "prediction_answer") == "B"
    assert read_field(old, "parsed_prediction_flexible") == "b"
    assert read_field({"parsed_prediction": None, "extracted": "x"}, "parsed_prediction") is None


def test_readme_documents_every_samples_field(tmp_path):
    """Every field a smoke run writes into samples.jsonl has a row in the README's field table."""
    section = README.read_text().split("#### samples.jsonl fields", 1)[1].split("\n#", 1)[0]
    documented = {name for first in re.findall(r"^\| ([^|]+)\|", section, re.M)
                  for name in re.findall(r"`([^`]+)`", first)}
    seen: set[str] = {"missing"}  # written by score for a sample without a prediction
    per_sample: set[str] = set()
    for task in ("synth_imageqa", "synth_videoqa", "synth_temporal_grounding", "synth_grounding", "synth_text"):
        for rec in _run(task, tmp_path):
            seen |= set(rec)
            per_sample |= set(rec["scores"])  # the per-sample scores, documented as one family
    assert seen - per_sample - documented == set()
    assert "`<score>`" in section
