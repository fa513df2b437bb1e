"""Headline metrics equal the reference scorers' values, reply by reply.

`tests/data/reference_scoring/corpus.jsonl` holds realistic replies for the nine tasks (made by
`reference/scoring/make_corpus.py`), `expected.jsonl` the per-reply values the real lmms-eval 0.7.3 / lm-eval
0.4.13 code gave for them (`reference/scoring/run_reference.py`, run in its own venv). Every reply is scored here
with the task's YAML (headline parser and scorer) and must agree on >= 99.5% of the replies of each task and
part; replies where the reference guessed at random, and Thinking replies cut before `</think>` (a deliberate
parse failure here), are left out and checked on their own. Print the agreement table, for either reading:

    python tests/test_reference_scoring.py [--flexible]
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from qwen3vl_eval.eval.adapters import Sample, gsm8k_target
from qwen3vl_eval.eval.results import score_sample
from qwen3vl_eval.eval.task import load_registry

DATA = Path(__file__).parent / "data" / "reference_scoring"
MIN_AGREEMENT = 0.995


def load_corpus() -> list[tuple[dict, dict]]:
    rows = [json.loads(line) for line in (DATA / "corpus.jsonl").read_text().splitlines() if line.strip()]
    expected = {e["id"]: e for e in map(json.loads, (DATA / "expected.jsonl").read_text().splitlines())}
    return [(r, expected[r["id"]]) for r in rows]


def our_target(row: dict) -> object:
    """The Sample target our adapters build from the same data (see eval/adapters.py)."""
    if row["task"] == "gsm8k":
        return gsm8k_target(row["target"])
    if row["task"] == "mmmu_val":
        return {"answer": row["target"], "choices": row["choices"]}
    return row["target"]


def score_row(registry: dict, row: dict, flexible: bool = False) -> dict:
    spec = registry[row["task"]]
    sample = Sample(row["id"], our_target(row), choices=row.get("choices") or [])
    rec = score_sample(spec, sample, row["reply"], thinking=row["thinking"])
    scores = rec["scores"]
    if flexible:
        scores = {k.removesuffix("_flexible"): v for k, v in scores.items() if k.endswith("_flexible")}
    return {"scores": scores, "truncated": bool(rec.get("truncated_reasoning"))}


def agrees(ours: dict, ref: dict) -> bool:
    return all(math.isclose(ours.get(k, math.nan), v, abs_tol=1e-9) for k, v in ref.items())


def agreement(flexible: bool = False) -> tuple[dict, list]:
    """{(task, part): [agreeing, compared, excluded]} and the disagreements."""
    registry = load_registry()
    table: dict = defaultdict(lambda: [0, 0, 0])
    wrong = []
    for row, exp in load_corpus():
        cell = table[(row["task"], row["split"])]
        if exp["random"] or exp["deviation"]:
            cell[2] += 1
            continue
        ours = score_row(registry, row, flexible)
        cell[1] += 1
        if agrees(ours["scores"], exp["scores"]):
            cell[0] += 1
        else:
            wrong.append((row["id"], row["reply"], ours["scores"], exp["scores"]))
    return dict(table), wrong


@pytest.fixture(scope="module")
def measured() -> tuple[dict, list]:
    return agreement()


def test_corpus_covers_every_task(measured):
    table, _ = measured
    rows = load_corpus()
    assert len(rows) >= 1500 + 375
    assert {t for t, _ in table} == {"docvqa_val", "chartqa_test", "textvqa_val", "mmmu_val", "videomme",
                                     "charades_sta", "gsm8k", "mmlu", "refcoco_val"}
    assert all(compared >= 30 for _, compared, _ in table.values())


@pytest.mark.parametrize("part", ["tune", "heldout"])
def test_headline_agrees_with_reference(measured, part):
    table, wrong = measured
    low = {t: ok / n for (t, p), (ok, n, _) in table.items() if p == part and ok / n < MIN_AGREEMENT}
    shown = [w for w in wrong if w[0].startswith(part)][:10]
    assert not low, f"agreement under {MIN_AGREEMENT:.1%}: {low}; e.g. {shown}"


def test_reference_guesses_are_our_counted_guesses():
    registry = load_registry()
    guesses = [(row, exp) for row, exp in load_corpus() if exp["random"] and not exp["deviation"]]
    assert guesses, "the corpus has MMMU replies with no recognisable option"
    for row, _ in guesses:
        assert score_row(registry, row)["scores"].get("random_fallback") == 1.0, row["reply"]


def test_truncated_thinking_is_a_counted_parse_failure():
    registry = load_registry()
    cut = [row for row, exp in load_corpus() if exp["deviation"] == "truncated_reasoning"]
    assert len(cut) >= 20
    for row in cut:
        out = score_row(registry, row)
        assert out["truncated"] and not any(out["scores"].values()), row["id"]
        flex = score_row(registry, row, flexible=True)
        assert not any(flex["scores"].values()), row["id"]


if __name__ == "__main__":
    table, wrong = agreement(flexible="--flexible" in sys.argv)
    print(f"{'task':14} {'part':8} {'agree':>7} {'of':>5} {'excl':>5}")
    for (task, part), (ok, n, excl) in sorted(table.items(), key=lambda kv: (kv[0][1] != "tune", kv[0][0])):
        print(f"{task:14} {part:8} {100 * ok / n:6.1f}% {n:5d} {excl:5d}")
    for w in wrong[: int(sys.argv[sys.argv.index("--show") + 1]) if "--show" in sys.argv else 0]:
        print(w)
