"""The README's set-up and test commands are what CI runs (issue #15): the two code blocks after the README's
`.ci/run` marker are, line for line, the commands after `# README commands:` in `.ci/run`, and they work from a
fresh shell (no activated virtual environment: the test command names `.venv/bin/python`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    marker = text.index("<!-- .ci/run runs the commands of this block and the next one verbatim")
    blocks = re.findall(r"^```\n(.*?)^```", text[marker:], flags=re.S | re.M)[:2]
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def ci_commands() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    start = lines.index("# README commands:") + 1
    return [line for line in lines[start:] if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readme_commands_verbatim() -> None:
    assert readme_commands() == ci_commands() == ["./quickstart.sh",
                                                  '.venv/bin/python -m pytest -q -m "not cuda and not golden"']


def test_the_commands_need_no_activated_environment() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "activate" not in ci and "unset VIRTUAL_ENV PYTHONPATH" in ci
    for script in (ROOT / ".ci" / "run", ROOT / "quickstart.sh"):
        assert os.access(script, os.X_OK), script
    quickstart = (ROOT / "quickstart.sh").read_text(encoding="utf-8")
    assert 'VENV=${VENV:-.venv}' in quickstart  # the .venv the test command names
