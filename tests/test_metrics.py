"""Metrics on hand-worked cases, as the benchmarks' standard scripts compute them."""

import pytest

from qwen3vl_eval.eval.metrics import (
    METRICS,
    SCORERS,
    anls,
    box_iou,
    levenshtein,
    mmmu_open_correct,
    relaxed_correctness,
    summarize,
    temporal_iou,
    vqa_accuracy,
    vqa_normalize,
)


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("same", "same") == 0


def test_anls():
    assert anls("Hello", ["hallo"]) == pytest.approx(0.8)  # 1 edit / 5 chars
    assert anls("  John   SMITH ", ["john smith"]) == 1.0  # case and whitespace
    assert anls("abcdef", ["abcxyz"]) == 0.5  # similarity exactly 0.5 is kept
    assert anls("abcdefg", ["abcwxyz"]) == 0.0  # 4/7 distance -> similarity 0.43 < 0.5 -> 0
    assert anls("5/5/76", ["May 5, 1976", "5/5/76"]) == 1.0  # best reference


def test_relaxed_accuracy():
    assert relaxed_correctness("104", "100")  # 4% off
    assert not relaxed_correctness("106", "100")  # 6% off
    assert relaxed_correctness("23.5%", "0.235")  # percent divides by 100
    assert relaxed_correctness("yemen", "Yemen")
    assert not relaxed_correctness("0.1", "0")  # zero target: exact string match only
    assert SCORERS["relaxed_accuracy"]("14", "14") == {"relaxed_accuracy": 1.0}
    assert SCORERS["relaxed_accuracy"](None, "14") == {"relaxed_accuracy": 0.0}


def test_vqa_normalisation():
    assert vqa_normalize("The Cat!") == "cat"
    assert vqa_normalize("two dogs") == "2 dogs"
    assert vqa_normalize("dont") == "don't"
    assert vqa_normalize("1,000") == "1000"
    assert vqa_normalize("a.b.c.") == "abc"  # periods not before a digit go (official regex)
    assert vqa_normalize("3.5.") == "3.5"


def test_vqa_accuracy_leave_one_out():
    assert vqa_accuracy("dakota", ["dakota"] * 10) == 1.0
    # 3 of 10 match: 3 subsets see 2 others (2/3), 7 subsets see 3 (1) -> (3*2/3 + 7) / 10
    assert vqa_accuracy("red", ["red"] * 3 + ["blue"] * 7) == pytest.approx(0.9)
    # 1 of 10: 9 subsets see it once (1/3), one does not -> 0.3
    assert vqa_accuracy("Red.", ["red"] + ["blue"] * 9) == pytest.approx(0.3)
    assert vqa_accuracy("green", ["red"] * 10) == 0.0


def test_temporal_iou():
    assert temporal_iou([0, 10], [5, 15]) == pytest.approx(5 / 15)
    assert temporal_iou([2, 4], [2, 4]) == 1.0
    assert temporal_iou([0, 1], [2, 3]) == 0.0
    assert temporal_iou([3, 3], [0, 10]) == 0.0
    assert SCORERS["temporal_iou"](None, [0, 1]) == {"iou": 0.0}


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0
    t = {"bbox": [0, 0, 10, 10], "width": 100, "height": 100}
    assert SCORERS["box_iou"]([0, 0, 10, 20], t) == {"iou": 0.5}


def test_gsm8k_exact_match():
    s = SCORERS["gsm8k"]
    assert s({"flexible": "1200", "strict": "1200"}, "1200") == {"exact_match": 1.0, "exact_match_strict": 1.0}
    assert s({"flexible": "18.0", "strict": None}, "18") == {"exact_match": 1.0, "exact_match_strict": 0.0}
    assert s(None, "18") == {"exact_match": 0.0, "exact_match_strict": 0.0}


def test_mmmu():
    assert mmmu_open_correct("The area is 12.50 square units", "12.5")
    assert mmmu_open_correct("It is a Triangle.", "triangle")
    assert mmmu_open_correct("about 24", "['24', '24.0']")
    assert not mmmu_open_correct("13", "12.5")
    assert SCORERS["mmmu"]("B", {"answer": "B", "choices": ["x", "y"]}) == {"accuracy": 1.0}
    assert SCORERS["mmmu"]("A", {"answer": "B", "choices": ["x", "y"]}) == {"accuracy": 0.0}


def test_thresholds_and_summary():
    assert METRICS["r1@0.5"].sample_value({"iou": 0.5}) == 1.0
    assert METRICS["r1@0.7"].sample_value({"iou": 0.69}) == 0.0
    records = [
        {"id": "1", "scores": {"iou": 0.8}, "parsed": True, "meta": {"d": "short"}},
        {"id": "2", "scores": {"iou": 0.4}, "parsed": True, "meta": {"d": "long"}},
        {"id": "3", "scores": {"iou": 0.0}, "parsed": False, "meta": {"d": "long"}},
        {"id": "4", "scores": None, "parsed": False, "error": "boom", "meta": {"d": "long"}},
    ]
    s = summarize(["r1@0.3", "r1@0.5", "miou"], records, ["d"])
    assert s["metrics"]["r1@0.3"] == 50.0  # 2 of 4 (the error counts 0)
    assert s["metrics"]["r1@0.5"] == 25.0
    assert s["metrics"]["miou"] == pytest.approx(30.0)
    assert s["metrics"]["parse_failure_rate"] == pytest.approx(100 / 3)  # 1 of the 3 that produced text
    assert (s["n_samples"], s["n_errors"], s["n_parse_failures"]) == (4, 1, 1)
    assert s["breakdowns"]["d"]["long"]["n"] == 3
    assert s["breakdowns"]["d"]["short"]["r1@0.5"] == 100.0
