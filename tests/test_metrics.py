"""Metrics on hand-worked cases, as the benchmarks' standard scripts compute them."""

from types import SimpleNamespace

import pytest

from qwen3vl_eval.eval import reference_lm_eval, reference_lmms  # noqa: F401  (register the headline rules)
from qwen3vl_eval.eval.aggregate import summarize
from qwen3vl_eval.eval.metrics import (
    METRICS,
    SCORERS,
    anls,
    box_iou,
    get_metric,
    levenshtein,
    mmmu_open_correct,
    relaxed_correctness,
    temporal_iou,
    vqa_accuracy,
    vqa_normalize,
)
from qwen3vl_eval.eval.parsers import PARSERS


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
    assert s["metrics"]["parse_failure_rate"] == 50.0  # the parse failure and the error, of all 4
    assert (s["n_samples"], s["n_errors"], s["n_parse_failures"]) == (4, 1, 1)
    assert s["breakdowns"]["d"]["long"]["n"] == 3
    assert s["breakdowns"]["d"]["short"]["r1@0.5"] == 100.0


def test_mmmu_open_flexible_fixes():
    # the stated answer counts, not any number of the working (was right for gold 24)
    assert not mmmu_open_correct("24 * 2 = 48, so 48", "24")
    assert mmmu_open_correct("48 / 2 = 24, so 24", "24")
    assert not mmmu_open_correct("The answer is not 24, it is 3.", "24")  # negated
    assert not mmmu_open_correct("The value is (1,2)", "12")  # (1,2) is not 12
    assert mmmu_open_correct("0.0025", "2.5e-3") and mmmu_open_correct("2.5e-3", "0.0025")  # scientific golds
    assert not mmmu_open_correct("0.001", "2.5e-3")  # 2 decimals alone would call these equal
    assert not mmmu_open_correct("It was not the Renaissance.", "Renaissance")


def test_flexible_metric_names_and_counts():
    m = get_metric("acc@0.5_flexible")
    assert (m.key, m.threshold) == ("iou_flexible", 0.5)
    records = [{"id": "1", "scores": {"accuracy": 1.0, "accuracy_flexible": 1.0}, "parsed": True,
                "parsed_flexible": True},
               {"id": "2", "scores": {"accuracy": 0.0, "accuracy_flexible": 0.0, "random_fallback": 1.0},
                "parsed": True, "parsed_flexible": False},
               {"id": "3", "scores": {"accuracy": 0.0, "accuracy_flexible": 0.0}, "parsed": False,
                "parsed_flexible": False, "truncated_reasoning": True}]
    s = summarize(["accuracy", "accuracy_flexible"], records)
    assert s["metrics"]["accuracy"] == pytest.approx(100 / 3)
    assert s["metrics"]["parse_failure_rate_flexible"] == pytest.approx(200 / 3)
    assert (s["n_random_fallback"], s["n_truncated_reasoning"]) == (1, 1)


def test_reference_quirks_kept_in_headline():
    # lm-eval gsm8k compares strings: "1080.00" is not "1080"; flexible-extract takes the last number-ish token
    gsm = PARSERS["gsm8k_lm_eval"]("so 1,080.00 dollars\n#### 1,080.00", None)
    assert SCORERS["gsm8k_lm_eval"](gsm, "1080") == {"exact_match": 0.0, "exact_match_strict": 0.0}
    assert SCORERS["gsm8k_lm_eval"](PARSERS["gsm8k_lm_eval"]("#### 1,080.", None), "1080")["exact_match_strict"]
    assert PARSERS["gsm8k_lm_eval"]("#### $1,080", None)["strict"] == "[invalid]"  # strict-match has no "$"
    # lm-eval mmlu_generative: the first line without punctuation must be the letter
    assert PARSERS["mmlu_lm_eval"]("(B).\nbecause", None) == "(B)."
    assert SCORERS["mmlu_lm_eval"]("(B).", "B") == {"accuracy": 1.0}
    assert SCORERS["mmlu_lm_eval"]("Answer: B", "B") == {"accuracy": 0.0}
    # lmms-eval chartqa reads the raw reply; ANLS divides by the raw length
    assert SCORERS["relaxed_lmms"](" Canada", "Canada") == {"relaxed_accuracy": 0.0}
    assert SCORERS["anls_lmms"]("abc  ", ["abd"])["anls"] == pytest.approx(0.8)  # 1 - 1/5
    assert SCORERS["anls"]("abc  ", ["abd"])["anls"] == pytest.approx(2 / 3)  # 1 - 1/3


def test_mmmu_random_fallback_is_seeded_and_flagged():
    sample = SimpleNamespace(id="validation_Art_3", choices=["red", "green", "blue", "black"])
    first = PARSERS["mmmu_ref"]("I cannot tell", sample)
    assert first["random_fallback"] and first == PARSERS["mmmu_ref"]("I cannot tell", sample)
    other = [PARSERS["mmmu_ref"]("no idea", SimpleNamespace(id=str(i), choices=sample.choices))["choice"]
             for i in range(40)]
    assert set(other) == {"A", "B", "C", "D"}  # a draw per sample, not a constant letter
    assert PARSERS["mmmu_ref"]("The answer is (C).", sample) == {"choice": "C", "random_fallback": False}
    assert SCORERS["mmmu_ref"](first, {"answer": first["choice"]})["random_fallback"] == 1.0
