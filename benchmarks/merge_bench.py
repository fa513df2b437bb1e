"""Merge several `bench --json` files into one report folder (bench.json, report.md, throughput.png,
latency.png) and print a short markdown table of the key figures.

    python benchmarks/merge_bench.py --out DIR a.json b.json ...

Missing or unreadable inputs are listed and skipped, so a partial GPU run still gets a report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qwen3vl_eval.bench.report import write_outputs


def _fmt(v: float | None, nd: int = 1) -> str:
    return "–" if v is None else f"{v:,.{nd}f}"


def key_table(rows: list[dict]) -> str:
    """model, backend, batch, TTFT, decode tok/s, TPOT, decode bandwidth use, peak memory (or the error)."""
    out = ["| model | backend | batch | TTFT ms | decode tok/s | TPOT ms | decode BW | peak MiB | error |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bw = r.get("decode_bandwidth_util")
        out.append(f"| {r.get('model')} | {r.get('backend')} | {r.get('batch_size')} | {_fmt(r.get('ttft_ms'), 2)} | "
                   f"{_fmt(r.get('decode_tokens_per_s'))} | {_fmt(r.get('tpot_ms'), 2)} | "
                   f"{'–' if bw is None else f'{100 * bw:.1f}%'} | {_fmt(r.get('peak_memory_mb'), 0)} | "
                   f"{r.get('error') or ''} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="report folder")
    ap.add_argument("files", nargs="*", type=Path, help="bench JSON files (lists of rows)")
    args = ap.parse_args(argv)
    rows: list[dict] = []
    for f in args.files:
        try:
            data = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"skipped {f}: {e}", file=sys.stderr)
            continue
        if isinstance(data, list):
            rows += [r for r in data if isinstance(r, dict)]
    if not rows:
        print("no bench rows to merge")
        return 1
    write_outputs(rows, args.out)
    print(key_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
