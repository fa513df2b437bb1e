#!/usr/bin/env bash
# GPU check: CUDA parity against the goldens, the CUDA tests, and benchmarks, on a machine with a CUDA GPU and
# no internet (torch with CUDA preinstalled; our package is used from the source tree through PYTHONPATH, and
# any wheels under .whl/ -- e.g. PyAV, which the image lacks -- are installed offline into /tmp/site first).
#
#   OUT=/some/dir benchmarks/gpu_check.sh        # OUT defaults to ./gpu_check_out
#
# Every step has its own timeout and the whole script keeps to GPU_CHECK_BUDGET_S seconds (default 540);
# a step that fails or times out is recorded and the next one runs. At most 8 files land in $OUT:
#   summary.md          steps with status and time, environment, key benchmark figures, parity failures
#   steps.log           the output of every step, one after the other
#   parity_fp32.json    parity rows, float32 (qwen3vl-eval parity --json)
#   parity_bf16.json    parity rows, bfloat16
#   bench.json          all benchmark rows (bench --json), merged
#   bench_report.md     the merged benchmark report
#   extras.tar.gz       charts (throughput, latency vs batch size), parity_fp16.json, moe_bench.json,
#                       long_prefill.json and the per-model bench reports
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu_check_out}
BUDGET=${GPU_CHECK_BUDGET_S:-540}
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
mkdir -p "$OUT"
LOG=$OUT/steps.log
SUMMARY=$OUT/summary.md
ROWS=$WORK/rows.md
: >"$LOG"
: >"$ROWS"
START=$SECONDS

export PYTHONUNBUFFERED=1 MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
export QWEN3VL_EVAL_CACHE=$WORK/cache HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# GPU_CHECK_STEPS: comma list of groups to run (parity, tests, bench, moe, long, compile); default all but compile.
STEPS=${GPU_CHECK_STEPS:-parity,tests,bench,moe,long}
want() { [[ ",$STEPS," == *",$1,"* ]]; }

# run_step NAME SECONDS CMD...: run with a timeout capped by what is left of the budget, log, record status.
run_step() {
  local name=$1 limit=$2 left status rc t0
  shift 2
  left=$((BUDGET - (SECONDS - START) - 15))
  if [ "$left" -lt 20 ]; then
    echo "| $name | skipped (budget spent) | 0 s |" >>"$ROWS"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  printf '\n===== %s (limit %ss): %s\n' "$name" "$limit" "$*" >>"$LOG"
  t0=$SECONDS
  timeout --kill-after=15 "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status="TIMEOUT after ${limit}s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  echo "===== $name: $status" >>"$LOG"
  echo "| $name | $status | $((SECONDS - t0)) s |" >>"$ROWS"
  return 0
}

# --- environment -------------------------------------------------------------------------------------------
if ls .whl/*.whl >/dev/null 2>&1; then
  run_step "install carried wheels" 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=$ROOT:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi
CLI=("$PY" -m qwen3vl_eval)

run_step "preflight" 60 "$PY" - <<'EOF'
import importlib, torch
print("env torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("env device", p.name, f"{p.total_memory / 2**30:.1f} GiB", "sm", f"{p.major}.{p.minor}")
missing = []
for m in ("av", "tokenizers", "safetensors", "typer", "jinja2", "PIL", "matplotlib", "transformers",
          "qwen3vl_eval.cli", "qwen3vl_eval.bench.measure"):
    try:
        mod = importlib.import_module(m)
        print(f"env ok {m} {getattr(mod, '__version__', '')}")
    except Exception as e:  # report and carry on: later steps say what they could not do
        missing.append(m)
        print(f"env MISSING {m}: {type(e).__name__}: {e}")
assert torch.cuda.is_available(), "no CUDA device"
assert "qwen3vl_eval.cli" not in missing, "the CLI does not import"
EOF

HAS_HF=0
"$PY" -c "import transformers" >/dev/null 2>&1 && HAS_HF=1
FREE_GIB=$("$PY" -c "import torch; f,t=torch.cuda.mem_get_info(); print(int(f/2**30))" 2>/dev/null || echo 0)

# --- parity against the goldens ---------------------------------------------------------------------------
shopt -s nullglob
CASES=(reference/golden/*/)
shopt -u nullglob
if ! want parity; then
  :
elif [ ${#CASES[@]} -gt 0 ]; then
  run_step "parity float32" 60 "${CLI[@]}" parity "${CASES[@]}" --device cuda --dtype float32 \
    --json "$OUT/parity_fp32.json"
  run_step "parity bfloat16" 60 "${CLI[@]}" parity "${CASES[@]}" --device cuda --dtype bfloat16 \
    --json "$OUT/parity_bf16.json"
  run_step "parity float16" 60 "${CLI[@]}" parity "${CASES[@]}" --device cuda --dtype float16 \
    --json "$WORK/parity_fp16.json"
else
  echo "| parity | skipped (no cases under reference/golden/) | 0 s |" >>"$ROWS"
fi

# --- CUDA tests -------------------------------------------------------------------------------------------
want tests && run_step "pytest -m cuda" 150 "$PY" -m pytest -m cuda -q -p no:cacheprovider --continue-on-collection-errors tests

# --- benchmarks (random weights of the real sizes) --------------------------------------------------------
BASE=()
[ "$HAS_HF" = 1 ] && [ "${GPU_CHECK_BASELINE:-1}" = 1 ] && BASE=(--baseline hf)  # GPU_CHECK_BASELINE=0: native only
COMMON=(--device cuda --dtype bfloat16 --prompt-tokens 512 --image 448x448 --new-tokens 64 --warmup 1 --repeats 3
  --no-charts)
want bench && run_step "bench 2B" 90 "${CLI[@]}" bench --preset 2B --batch-size 1,32 "${COMMON[@]}" "${BASE[@]}" \
  --output "$WORK/bench_2B" --json "$WORK/bench_2B.json"
want bench && run_step "bench 8B" 120 "${CLI[@]}" bench --preset 8B --batch-size 1,32 "${COMMON[@]}" "${BASE[@]}" \
  --output "$WORK/bench_8B" --json "$WORK/bench_8B.json"
MOE_LAYERS=()
[ "$FREE_GIB" -ge 70 ] || MOE_LAYERS=(--layers 16)  # 62 GB of bf16 weights plus room for the cache
want moe && run_step "moe bench 30B-A3B" 180 "$PY" benchmarks/moe_bench.py --preset 30B-A3B --impl auto,gather \
  --prompt-tokens 128 --new-tokens 64 --warmup 1 --repeats 3 --max-seconds 160 "${MOE_LAYERS[@]}" \
  --json "$WORK/moe_bench.json"
# Long-prompt prefill: 8B, 32k tokens in chunks, no dense mask (time, peak memory, % of bf16 peak FLOP/s).
want long && run_step "long prefill 8B 32k" 150 "$PY" benchmarks/long_prefill.py --preset 8B --tokens 32768 \
  --device cuda --dtype bfloat16 --repeats 2 --json "$WORK/long_prefill.json"
# Inductor-fused decode step (torch.compile) against the plain CUDA-graph step, same shapes (one cache bucket).
CMP=(--device cuda --dtype bfloat16 --prompt-tokens 256 --image 448x448 --new-tokens 32 --warmup 1 --repeats 3
  --batch-size 1 --no-charts)
want compile && run_step "bench 2B graph" 60 "${CLI[@]}" bench --preset 2B "${CMP[@]}" \
  --output "$WORK/bench_2B_graph" --json "$WORK/bench_2B_graph.json"
want compile && run_step "bench 2B graph+compile" 150 "${CLI[@]}" bench --preset 2B "${CMP[@]}" --compile \
  --output "$WORK/bench_2B_compile" --json "$WORK/bench_2B_compile.json"
run_step "merge bench" 40 "$PY" benchmarks/merge_bench.py --out "$WORK/merged" "$WORK"/bench_*.json
for f in bench.json:bench.json report.md:bench_report.md; do
  [ -f "$WORK/merged/${f%%:*}" ] && cp "$WORK/merged/${f%%:*}" "$OUT/${f##*:}"
done
# Everything else in one archive (the device tool brings back at most 8 files).
mkdir -p "$WORK/extras"
for f in "$WORK"/merged/*.png "$WORK"/parity_fp16.json "$WORK"/moe_bench.json "$WORK"/long_prefill.json "$WORK"/bench_*/report.md; do
  [ -f "$f" ] && cp "$f" "$WORK/extras/$(basename "$(dirname "$f")")_$(basename "$f")"
done
tar -C "$WORK/extras" -czf "$OUT/extras.tar.gz" . 2>>"$LOG"

# --- summary ----------------------------------------------------------------------------------------------
{
  echo "# GPU check"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $((SECONDS - START)) s in all, budget ${BUDGET} s"
  echo
  echo '```'
  grep '^env ' "$LOG" | head -n 20
  echo '```'
  echo
  echo "| step | status | time |"
  echo "|---|---|---|"
  cat "$ROWS"
  echo
  "$PY" - "$OUT" "$WORK/long_prefill.json" <<'EOF' 2>&1
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
long = Path(sys.argv[2])
if long.is_file():
    r = json.loads(long.read_text())
    util = f"{r['flops_util']:.1%}" if r.get("flops_util") is not None else "n/a"
    print(f"- long prefill {r['model']} {r['tokens']} tokens ({r['dtype']}, chunk {r['chunk']}): {r['seconds']:.2f} s, "
          f"{r['tokens_per_s']:.0f} tok/s, peak {r['peak_memory_mb']:.0f} MiB, {util} of peak FLOP/s")
for name in ("parity_fp32.json", "parity_bf16.json"):
    p = out / name
    if not p.is_file():
        print(f"- {name}: not written")
        continue
    rows = json.loads(p.read_text())
    bad = [r for r in rows if isinstance(r, dict) and r.get("passed") is False]
    print(f"- {name}: {len(rows)} rows, {len(bad)} failed")
    for r in bad[:10]:
        print(f"  - {r.get('case')} {r.get('key')}: {({k: r[k] for k in r if k not in ('case', 'key')})}")
p = out / "bench.json"
if p.is_file():
    sys.path.insert(0, "benchmarks")
    from merge_bench import key_table
    print()
    print(key_table(json.loads(p.read_text())))
EOF
} >"$SUMMARY"
rm -rf "$WORK"
cat "$SUMMARY"
