#!/usr/bin/env bash
# CPU comparison against transformers' generate on the same checkpoints, in one run per checkpoint: `tiny`
# (overhead-bound) and `tiny-small` (~100M parameters, arithmetic-bound). Needs the golden extra
# (transformers); run it on a quiet machine, since both backends share its cores.
#   PY=/root/gvenv/bin/python benchmarks/cpu_vs_hf.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${1:-reports/cpu/$(date -u +%Y-%m-%d)}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} MPLBACKEND=Agg
COMMON=(--device cpu --dtype float32 --batch-size 1,8 --prompt-tokens 256 --image 448x448 --warmup 2 --repeats 5
  --baseline hf)
"$PY" -m qwen3vl_eval bench --model tiny --new-tokens 64 "${COMMON[@]}" --output "$OUT/tiny" --json "$OUT/tiny.json"
"$PY" -m qwen3vl_eval bench --model tiny-small --new-tokens 32 "${COMMON[@]}" --output "$OUT/small" \
  --json "$OUT/small.json"
