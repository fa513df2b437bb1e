"""The video tasks' headline metrics equal lmms-eval 0.7.3's, reply by reply and aggregated.

`tests/data/reference_scoring/video_corpus.jsonl` holds realistic multiple-choice replies for mvbench,
longvideobench_val, mlvu_dev and lvbench (`reference/scoring/make_video_corpus.py`); `video_expected.jsonl` the
per-reply values and `video_expected_aggregates.jsonl` each task's own aggregation over chunks of replies, both
from lmms-eval's task code (`reference/scoring/run_video_reference.py`, run in its own venv). Every reply must
agree (100%, both parts); replies where the reference draws a random letter, and Thinking replies cut before
`</think>`, are checked on their own. Print the agreement table: `python tests/test_tasks_video_reference.py`.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from qwen3vl_eval.eval.adapters import Sample
from qwen3vl_eval.eval.aggregate import summarize
from qwen3vl_eval.eval.results import score_sample
from qwen3vl_eval.eval.task import load_registry

DATA = Path(__file__).parent / "data" / "reference_scoring"
REGISTRY = load_registry()
HEADLINE_KEYS = ("accuracy", "unanswered")


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


CORPUS = {r["id"]: r for r in load("video_corpus.jsonl")}
EXPECTED = {e["id"]: e for e in load("video_expected.jsonl")}


def sample_of(row: dict) -> Sample:
    """The Sample our adapter builds for the same question (eval/adapters_video.py)."""
    target: object = row["answer"]
    if row["task"] == "longvideobench_val":
        target = {"answer": row["answer"], "choices": row["choices"]}
    elif row["task"] == "mlvu_dev":
        target = {"answer": row["answer"], "choices": row["choices"], "task_type": row["task_type"]}
    return Sample(row["id"], target, choices=row["choices"], meta={k: row[k] for k in ("task_type",) if k in row})


def record(row: dict) -> dict:
    return score_sample(REGISTRY[row["task"]], sample_of(row), row["reply"], thinking=row["thinking"])


def headline(scores: dict) -> dict[str, float]:
    return {k: float(scores.get(k, 0.0)) for k in HEADLINE_KEYS}


def agreement() -> tuple[dict, list]:
    """{(task, part): [agreeing, compared, excluded]} and the disagreements."""
    table: dict = defaultdict(lambda: [0, 0, 0])
    wrong = []
    for sid, row in CORPUS.items():
        exp = EXPECTED[sid]
        cell = table[(row["task"], row["split"])]
        if exp["random"] or exp["deviation"]:
            cell[2] += 1
            continue
        ours = headline(record(row)["scores"])
        cell[1] += 1
        if ours == headline(exp["scores"]):
            cell[0] += 1
        else:
            wrong.append((sid, row["reply"], ours, exp["scores"]))
    return dict(table), wrong


def test_corpus_covers_the_four_tasks():
    table, _ = agreement()
    assert {t for t, _ in table} == {"mvbench", "longvideobench_val", "mlvu_dev", "lvbench"}
    assert all(compared >= 40 for _, compared, _ in table.values()), table
    assert len(CORPUS) >= 1000 and set(CORPUS) == set(EXPECTED)


def test_every_reply_agrees_with_lmms_eval():
    table, wrong = agreement()
    assert not wrong, f"{len(wrong)} disagreements, e.g. {wrong[:5]}"
    assert sum(n for _, n, _ in table.values()) >= 950


def test_reference_guesses_are_our_counted_guesses():
    guesses = [CORPUS[sid] for sid, e in EXPECTED.items() if e["random"] and not e["deviation"]]
    assert len(guesses) >= 10, "the corpus has LongVideoBench replies without a letter A-E"
    for row in guesses:
        assert row["task"] == "longvideobench_val"
        assert record(row)["scores"].get("random_fallback") == 1.0, row["reply"]


def test_truncated_thinking_is_a_counted_parse_failure():
    cut = [CORPUS[sid] for sid, e in EXPECTED.items() if e["deviation"] == "truncated_reasoning"]
    assert len(cut) >= 10
    for row in cut:
        rec = record(row)
        assert rec["truncated_reasoning"] and not rec["parsed"] and not rec["scores"].get("accuracy"), row["id"]


@pytest.mark.parametrize("task,metric", [("mvbench", "mvbench_accuracy"), ("longvideobench_val", "accuracy"),
                                         ("mlvu_dev", "m_avg"), ("lvbench", "accuracy")])
def test_aggregates_equal_the_reference_aggregation(task, metric):
    rows = [a for a in load("video_expected_aggregates.jsonl") if a["task"] == task]
    assert len(rows) >= 3, task
    tol = 5e-4 if task == "longvideobench_val" else 1e-9  # lmms-eval reports lvb_acc rounded to 5 decimals
    for agg in rows:
        got = summarize([metric], [record(CORPUS[sid]) for sid in agg["ids"]])["metrics"][metric]
        assert math.isclose(got, agg["value"], abs_tol=tol), (task, agg["ids"][0], got, agg["value"])
    if task == "mvbench":  # the corpus exercises the non-empty denominator
        assert any(EXPECTED[sid]["scores"].get("unanswered") for a in rows for sid in a["ids"])


if __name__ == "__main__":
    table, wrong = agreement()
    for (task, part), (ok, n, excluded) in sorted(table.items()):
        print(f"{task:20s} {part:8s} {ok}/{n} = {100 * ok / n:6.2f}%  ({excluded} excluded)")
    for w in wrong[:20]:
        print(w, file=sys.stderr)
