"""Named, versioned judge prompts: what an LLM judge is asked about one reply, and how its answer is read.

A judge prompt renders one user message from the sample (`{question}`, `{options}` as "A. text" lines,
`{letters}`), the reply being judged (`{reply}`, the answer after any `</think>`) and, for verdicts, the gold
answer (`{answer}`). Its `output` says how the judge's text is read:

- `verdict`: CORRECT or INCORRECT -> True / False (the judge compares the reply with the gold answer);
- `letter`: one option letter, or X for "no option" -> the letter / None;
- `text`: an extracted answer on the first line, or NONE -> the text / None.

A judge reply that is none of these (junk, a sentence, two answers) is unread: `read` returns `UNREAD`, the
sample counts as a judge failure and scores 0. Sources of the behaviour (the wording is ours):
lmms-eval 0.7.3 `llm_judge/prompt.py` (binary correctness judge, used for MMMU reasoning) and
`tasks/videomme/convert_mcq_oe` (matching a reply to an option, X for none); VLMEvalKit's MCQ choice extractor
(`can_infer` first, the judge only for what it cannot read, Z for none); lmms-eval `tasks/mathvista`
(few-shot answer extraction with the question's hint). Bump a version whenever a template or reader changes:
the judge cache is keyed by it, and results record it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from qwen3vl_eval.eval.parsers import LETTERS
from qwen3vl_eval.processor.chat import split_reasoning

OUTPUTS = ("verdict", "letter", "text")
UNREAD: Any = object()  # `JudgePrompt.read` of a judge reply in none of the expected forms


@dataclass(frozen=True)
class JudgePrompt:
    """A judge question (`template`), how its reply is read (`output`) and the judge's token budget."""

    name: str
    version: int
    output: str
    template: str
    max_tokens: int = 16

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def hash(self) -> str:
        blob = json.dumps([self.name, self.version, self.output, self.template, self.max_tokens])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def render(self, sample: Any, reply: str) -> str:
        """The judge's user message for `reply` to `sample` (question, options, gold answer when needed)."""
        choices = list(getattr(sample, "choices", None) or [])
        target = getattr(sample, "target", None)
        gold = target.get("answer") if isinstance(target, dict) else target
        return self.template.format(
            question=str(getattr(sample, "question", "")).strip(), reply=reply.strip(),
            options="\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)) or "(none)",
            letters=", ".join(LETTERS[: len(choices)]) or "A, B, C, D", answer=str(gold))

    def read(self, text: str, sample: Any = None) -> Any:
        """The judge's reply as a value (see the module docstring); `UNREAD` when it is in no expected form."""
        _, answer = split_reasoning(text or "")
        lines = [ln.strip() for ln in answer.strip().splitlines() if ln.strip()]
        if not lines:
            return UNREAD
        first = re.sub(r"^(?:final\s+)?(?:answer|verdict|extracted answer|output)\s*:\s*", "",
                       _bare(lines[0]), flags=re.IGNORECASE)
        first = _bare(first)
        if self.output == "verdict":
            word = first.upper()
            return {"CORRECT": True, "INCORRECT": False}.get(word, UNREAD)
        if self.output == "letter":
            n = len(getattr(sample, "choices", None) or []) or 4
            first = first.strip("()[]").strip()
            letter = first.upper() if len(first) == 1 else ""
            if letter == "X":
                return None
            return letter if letter and letter in LETTERS[:n] else UNREAD
        if first.upper() == "NONE":
            return None
        return first if len(lines) == 1 and first else UNREAD


def _bare(s: str) -> str:
    """`s` without surrounding markdown, quotes and end punctuation."""
    return s.strip().strip("*`'\"").strip().rstrip(".!").strip()


_VERDICT_OPEN = """You are grading a reply to an exam question against the reference answer.

Question:
{question}

Reference answer:
{answer}

Reply:
{reply}

Find the final answer the reply commits to; its working does not matter. The reply is correct when that answer \
means the same as the reference answer: an equal number (to the reference's precision, in an equivalent form such \
as a fraction, a decimal or a percentage), the same unit when the question asks for one, or the same entity or \
phrase in other words. It is incorrect when the answer differs, is only partly right, hedges between several \
answers, or adds a wrong claim.

Reply with one word: CORRECT or INCORRECT."""

_OPTION_MATCH = """Someone answered a multiple-choice question. Decide which option their reply chose.

Question:
{question}

Options:
{options}

Reply:
{reply}

If the reply picks exactly one option (by its letter, its text or an unmistakable paraphrase), answer with that \
option's letter. If it picks none, several, or refuses, answer X.

Answer with a single character: one of {letters}, or X."""

_MATH_EXTRACT = """Read a question and a reply to it, and write the final answer the reply gives, in the form \
the question asks for: an integer, a decimal with the number of places asked for, a Python list such as \
[1, 2], or an option letter when the question lists choices. Write the answer only, on one line, without units. \
If the reply gives no final answer, write NONE.

Question: How many apples are left if 3 of 8 are eaten?
Reply: After eating three, five apples remain on the table.
Extracted answer: 5

Question: What share of the bar is shaded? Give a decimal with one place.
Reply: About 0.4 of the bar, i.e. four tenths, is shaded.
Extracted answer: 0.4

Question: Which two labels have equal values? Answer with a list.
Reply: Labels 3 and 7 both read 12, so those two match.
Extracted answer: [3, 7]

Question: Which angle is largest?
A. 30 degrees
B. 60 degrees
C. 90 degrees
Reply: The right angle, (C), is the largest of the three.
Extracted answer: C

Question: {question}
Reply: {reply}
Extracted answer:"""

JUDGE_PROMPTS: dict[str, JudgePrompt] = {
    p.name: p
    for p in [
        # MMMU open questions (lmms-eval's binary correctness judge; VLMEvalKit's GPT judge for open MMMU).
        JudgePrompt("open_answer_verdict", 1, "verdict", _VERDICT_OPEN, max_tokens=8),
        # Video-MME and other MCQ sets: the option a reply the rules cannot read chose (VLMEvalKit, lmms-eval).
        JudgePrompt("option_match", 1, "letter", _OPTION_MATCH, max_tokens=8),
        # MathVista: the answer a reply the rules cannot read gives (lmms-eval / MathVista's own extractor).
        JudgePrompt("math_answer_extract", 1, "text", _MATH_EXTRACT, max_tokens=64),
    ]
}
