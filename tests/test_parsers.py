"""Answer extraction on hand-written replies, including the failure cases."""

from types import SimpleNamespace

import pytest

from qwen3vl_eval.eval.parsers import (
    PARSERS,
    box_to_pixels,
    numbers_in,
    parse_box_relative,
    parse_chart_answer,
    parse_gsm8k,
    parse_letter,
    parse_number,
    parse_short_answer,
    parse_time_span,
)
from qwen3vl_eval.processor.chat import split_reasoning


@pytest.mark.parametrize("text,n,expected", [
    ("B", 4, "B"),
    ("(B)", 4, "B"),
    ("b", 4, "B"),
    ("Answer: C", 4, "C"),
    ("The answer is (D).", 4, "D"),
    ("The correct answer is A", 4, "A"),
    ("C. Paris is the capital", 4, "C"),
    ("**B**", 4, "B"),
    ("I think the option B. is right", 4, "B"),
    ("J", 10, "J"),
    ("E", 4, None),  # out of range for 4 options
    ("A dog is running", 4, None),  # the article "A", not an option
    ("either A. or B.", 4, None),  # ambiguous
    ("", 4, None),
    ("no idea", 4, None),
])
def test_letters(text, n, expected):
    assert parse_letter(text, n) == expected


def test_letter_from_unique_option_text():
    assert parse_letter("It is Paris, clearly.", 4, ["London", "Paris", "Rome", "Berlin"]) == "B"
    assert parse_letter("London or Paris", 4, ["London", "Paris", "Rome", "Berlin"]) is None


def test_mc_letter_parser_uses_sample_choices():
    sample = SimpleNamespace(choices=["x", "y"], target="A")
    assert PARSERS["mc_letter"]("C", sample) is None
    assert PARSERS["mc_letter"]("(b)", sample) == "B"


@pytest.mark.parametrize("text,expected", [
    ("1,000", 1000.0), ("$5", 5.0), ("3.5%", 3.5), ("-2.25", -2.25), ("7.", 7.0), ("abc", None), ("1 2", None),
])
def test_numbers(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("1,000", "1000"), ("$5", "5"), ("3.5%", "3.5%"), ("Yemen", "Yemen"), ("Answer: 14", "14"), ("", None),
])
def test_chart_answer(text, expected):
    assert parse_chart_answer(text) == expected


def test_short_answer():
    assert parse_short_answer('\n  "John Smith"\nmore') == "John Smith"
    assert parse_short_answer("The answer is: 0.28") == "0.28"
    assert parse_short_answer("   ") is None


def test_gsm8k_both_extractions():
    assert parse_gsm8k("3 + 2 = 5 apples.\n#### 5") == {"flexible": "5", "strict": "5"}
    assert parse_gsm8k("It costs $1,200.") == {"flexible": "1200", "strict": None}
    assert parse_gsm8k("#### 18 and then 20") == {"flexible": "20", "strict": "18"}
    assert parse_gsm8k("no numbers") is None


@pytest.mark.parametrize("text,expected", [
    ("The event happens in 24.3 - 30.4 seconds.", (24.3, 30.4)),
    ("from 2 to 5.5", (2.0, 5.5)),
    ("between 3 and 7 seconds", (3.0, 7.0)),
    ("12.5s to 20s", (12.5, 20.0)),
    ("5 seconds - 9 seconds", (5.0, 9.0)),
    ("00:23.00 - 00:48.00", (23.0, 48.0)),
    ("It starts at 01:05 and ends at 01:10.5", (65.0, 70.5)),
    ("1:02:03 - 1:02:13", (3723.0, 3733.0)),
    ("30.4 - 24.3", (24.3, 30.4)),  # reversed: swapped
    ("The event starts at 5 and ends at 10", (5.0, 10.0)),
    ("24.3 \u2013 30.4", (24.3, 30.4)),
    ("no time here", None),
    ("at 5 seconds", None),
])
def test_time_spans(text, expected):
    assert parse_time_span(text) == expected


@pytest.mark.parametrize("text,expected", [
    ('```json\n[{"bbox_2d": [100, 200, 300, 400], "label": "man"}]\n```', [100, 200, 300, 400]),
    ('{"bbox_2d": [1, 2, 3, 4]}', [1, 2, 3, 4]),
    ('Here: [{"bbox_2d": [10, 20, 30, 40]}, {"bbox_2d": [0, 0, 5, 5]}] done', [10, 20, 30, 40]),
    ("[12, 34, 56, 78]", [12, 34, 56, 78]),
    ("The box is (5.5, 6, 7, 8).", [5.5, 6, 7, 8]),
    ("no box", None),
    ('{"bbox_2d": [1, 2, 3]}', None),
])
def test_boxes(text, expected):
    assert parse_box_relative(text) == expected


def test_box_scaling_clipping_and_ordering():
    assert box_to_pixels([100, 200, 300, 400], 200, 100) == [20.0, 20.0, 60.0, 40.0]
    assert box_to_pixels([300, 400, 100, 1200], 1000, 1000) == [100.0, 400.0, 300.0, 1000.0]
    sample = SimpleNamespace(target={"bbox": [0, 0, 1, 1], "width": 640, "height": 480})
    assert PARSERS["bbox_qwen3vl"]('{"bbox_2d": [0, 0, 500, 500]}', sample) == [0.0, 0.0, 320.0, 240.0]
    assert PARSERS["bbox_qwen3vl"]("nothing", sample) is None


def test_reasoning_split_and_parsers_see_the_answer_without_surrounding_whitespace():
    assert split_reasoning("<think>hmm, B?</think>\n\nB") == ("hmm, B?", "B")
    assert split_reasoning("plan</think>C") == ("plan", "C")
    assert split_reasoning(" A ") == (None, " A ")  # only newlines are the template's to trim
    sample = SimpleNamespace(choices=["x", "y"], target="A")
    assert PARSERS["mc_letter"](" A ", sample) == PARSERS["mc_letter"]("A", sample) == "A"
    assert PARSERS["short_answer"]("\n red \n", sample) == PARSERS["short_answer"]("red", sample)


# ---------------------------------------------------------------- issue #13 item 3: the flexible reading's fixes

@pytest.mark.parametrize("text,expected", [
    ("B or C", None),  # two letters offered: ambiguous (was C)
    ("A and B", None),  # (was B)
    ("B\n\nOption A is wrong because it ignores friction.", "B"),  # (was None)
    ("The answer is not B", None),  # negated (was B)
    ("The answer is not B; it is C.", "C"),
    ("It could be A or C; the best answer is C.", "C"),
    ("I think the answer is B, not C.", "B"),
])
def test_letter_fixes(text, expected):
    assert parse_letter(text, 4) == expected


def test_number_fixes():
    assert parse_number("2.5e-3") == 0.0025 and parse_number("1.2E+3") == 1200.0
    assert parse_number("1,2") is None  # a comma is only a thousands separator (was 12)
    assert numbers_in("(1,2) and 1,000") == [1.0, 2.0, 1000.0]


def test_time_span_fallback_skips_clip_lengths():
    # was (2.5, 30.0): the clip's length taken as the end
    assert parse_time_span("The video is 30 seconds long, starting at 2.5 and ending at 7.") == (2.5, 7.0)
    assert parse_time_span("The clip lasts 30 seconds; the event: 2.5 and then 7") == (2.5, 7.0)
    assert parse_time_span("Start time: 3.5\nEnd time: 9") == (3.5, 9.0)


def test_qwen2vl_box_tokens():
    assert parse_box_relative("<|box_start|>(10,20),(300,400)<|box_end|>") == [10, 20, 300, 400]
    assert parse_box_relative("<|object_ref_start|>man<|object_ref_end|>(1, 2), (3, 4)") == [1, 2, 3, 4]


def test_parsers_are_versioned():
    assert all(p.version >= 1 for p in PARSERS.values())
