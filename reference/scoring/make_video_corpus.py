"""Build the reply corpus that pins the headline metrics of the video tasks of issue #16 to lmms-eval 0.7.3.

Writes `tests/data/reference_scoring/video_corpus.jsonl`: realistic Qwen3-VL-style replies to multiple-choice
video questions for mvbench, longvideobench_val, mlvu_dev and lvbench, each line `{"id", "task", "split",
"reply", "thinking", "choices", "answer", ...task fields}` (`answer` is the letter; MVBench rows also carry the
answer's text as the dataset stores it). Two parts drawn with different seeds and style weights, `tune` and
`heldout`, as `make_corpus.py` does. Pure standard library; run from the repository root with any Python:

    python3 reference/scoring/make_video_corpus.py

Then `run_video_reference.py` (in the reference venv) scores every reply with lmms-eval's own task code.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_corpus import write_corpus  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "reference_scoring" / "video_corpus.jsonl"
PER_TASK = {"tune": 220, "heldout": 80}
SEEDS = {"tune": 31, "heldout": 4099}
TASKS = ["mvbench", "longvideobench_val", "mlvu_dev", "lvbench"]
MLVU_TYPES = ["plotQA", "needle", "ego", "count", "order", "anomaly_reco", "topic_reasoning"]
LVB_GROUPS = [15, 60, 600, 3600]
OPTION_SETS = [["The man opens the door.", "The man sits down.", "The man picks up a cup.", "The man leaves."],
               ["red", "green", "blue", "yellow"], ["0", "1", "2", "3", "4"], ["left", "right", "up", "down"],
               ["Pushing something from left to right", "Pushing something from right to left", "not sure"],
               ["A dog running", "A woman cooking", "Two kids playing", "A cat sleeping"],
               ["Under the first object from the left.", "Under the second object from the left.",
                "Under the third object from the left."], ["yes", "no", "not sure"],
               ["In the kitchen", "At the beach", "In an office", "On a bus", "In a forest"],
               ["x, n, f", "n, f, x", "f, x, n", "x, f, n"], ["Before he sits", "After he sits", "During the call",
                                                             "At the end"], ["Grassland", "Snowfield", "Desert",
                                                                             "Forest"]]
EXPLAIN = ["The person in the video clearly does this near the end.", "At 00:12 the object moves across the frame.",
           "Option A is wrong because the man never sits.", "Based on the frames, this is the best match.",
           "I looked at every frame; a man appears at the start.", "Because the cup is on the table at the end."]
THINK = ["Let me watch the clip again. The question asks what happens. Option A says one thing, option (B) another.",
         "Okay, the frames show a square moving. At first I thought C, but the last frame suggests otherwise.",
         "The user wants the letter. Step 1: find the event. Step 2: compare with A, B, C and D."]


class Mix:
    """Weighted choice of reply styles; the held-out part reverses the weights (rare styles become common)."""

    def __init__(self, rng: random.Random, split: str):
        self.rng, self.split = rng, split

    def pick(self, styles: list) -> object:
        n = len(styles)
        weights = [1 + i for i in range(n)] if self.split == "heldout" else [n - i for i in range(n)]
        return self.rng.choices(styles, weights=weights)[0]


def reply_for(rng: random.Random, mix: Mix, letter: str, options: list[str], task: str) -> str:
    """One reply naming `letter` (or not: the styles include empty, ambiguous and letterless replies)."""
    letters = "ABCDE"[: len(options)]
    text = options[letters.index(letter)]
    other = rng.choice([c for c in letters if c != letter] or [letter])
    why = rng.choice(EXPLAIN)
    styles = [
        lambda: letter, lambda: f"{letter}.", lambda: f"({letter})", lambda: f"{letter}) {text}",
        lambda: f"({letter}) {text}", lambda: f"{letter}. {text}", lambda: f"Answer: {letter}",
        lambda: f"The answer is {letter}.", lambda: f"The best answer is ({letter}) {text}.", lambda: f"**{letter}**",
        lambda: letter.lower(), lambda: f"{letter.lower()}. {text}", lambda: f"Option {letter}",
        lambda: f"{letter}\n\n{why}", lambda: text, lambda: f"{text}.", lambda: f"The correct option is {letter}",
        lambda: f"Best option: ({letter}) {text}", lambda: f"{letter})", lambda: f" {letter} ",
        lambda: f"I think the answer is {letter} because {why.lower()}", lambda: f"{why} So the answer is {letter}.",
        lambda: f"{letter} or {other}", lambda: f"Not {other}, the answer is {letter}.", lambda: "",
        lambda: "I cannot determine the answer from the video.", lambda: f"a person does it, {text.lower()}",
        lambda: f"Based on the video, the answer is {letter}.", lambda: f"答案是{letter}", lambda: f"{other}",
        lambda: f"{letter}: {text}", lambda: f"The answer\n{letter}", lambda: f"E. {text}",
        lambda: f"{why} {text}", lambda: f"Both {letter} and {other} look plausible, but {letter} fits best.",
        lambda: f"[{letter}]", lambda: f"{letter}, {text}", lambda: f"My answer is {letter}", lambda: " ",
    ]
    if task == "mlvu_dev":  # the prompt ends "Best option: (", so replies often continue it
        styles[:0] = [lambda: f"{letter}) {text}", lambda: f"{letter})"]
    return str(mix.pick(styles)())


def make_row(rng: random.Random, mix: Mix, task: str, split: str, k: int) -> dict:
    options = list(rng.choice(OPTION_SETS))
    rng.shuffle(options)
    if task != "longvideobench_val":
        options = options[:4] if task in ("mlvu_dev", "lvbench") else options
    letters = "ABCDE"[: len(options)]
    answer = rng.choice(letters)
    said = answer if rng.random() < 0.6 else rng.choice(letters)
    reply = reply_for(rng, mix, said, options, task)
    thinking = rng.random() < 0.1
    if thinking:
        reason = rng.choice(THINK)
        reply = f"<think>\n{reason}\n</think>\n\n{reply}" if rng.random() < 0.7 else f"<think>\n{reason} So"
    row = {"id": f"{split}-{task}-{k}", "task": task, "split": split, "reply": reply, "thinking": thinking,
           "choices": options, "answer": answer}
    if task == "mvbench":
        row["answer_text"] = options[letters.index(answer)]
    elif task == "longvideobench_val":
        row["duration_group"] = LVB_GROUPS[k % 4]
        row["question_category"] = rng.choice(["S2E", "T3E", "O2E", "SSS"])
    elif task == "mlvu_dev":
        row["task_type"] = MLVU_TYPES[k % 7]
    return row


def main() -> None:
    rows = []
    for split, n in PER_TASK.items():
        rng = random.Random(SEEDS[split])
        mix = Mix(rng, split)
        for task in TASKS:
            rows += [make_row(rng, mix, task, split, k) for k in range(n)]
    write_corpus(rows, OUT)


if __name__ == "__main__":
    main()
