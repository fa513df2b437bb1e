"""Peak host memory (the RSS high-water mark) of `load_model` on a preset-sized checkpoint.

    /root/venv/bin/python benchmarks/load_rss.py --preset 2B [--dir /tmp/qwen3vl-2B-random] [--dtype bfloat16]

Writes random weights of the preset's shape as bfloat16 safetensors shards (once; reused when DIR exists), then
loads them in a fresh process and reports that process's peak resident set size next to the weights' size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch


def write_checkpoint(preset: str, out: Path) -> None:
    from qwen3vl_eval.checkpoints.tiny import save_state_dict
    from qwen3vl_eval.model.config import Qwen3VLConfig
    from qwen3vl_eval.model.weights import random_state_dict

    cfg = Qwen3VLConfig.from_name(preset)
    out.mkdir(parents=True, exist_ok=True)
    state = random_state_dict(cfg, dtype=torch.bfloat16)  # build_model's weights (a loaded model fuses views)
    save_state_dict(state, out, shards=4)
    (out / "config.json").write_text(json.dumps(cfg.to_hf(), indent=2) + "\n")


def measure(path: Path, dtype: str) -> None:
    from qwen3vl_eval.model.weights import load_model
    from qwen3vl_eval.runtime.timing import peak_memory_mb

    start = time.perf_counter()
    model = load_model(path, device="cpu", dtype=getattr(torch, dtype))
    seconds = time.perf_counter() - start
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    peak = peak_memory_mb(torch.device("cpu"))[0] * 2**20  # this fresh process's RSS high-water mark
    print(json.dumps({"weights_gb": round(weights / 1e9, 3), "peak_rss_gb": round(peak / 1e9, 3),
                      "ratio": round(peak / weights, 3), "load_s": round(seconds, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="2B")
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = args.dir or Path(f"/tmp/qwen3vl-{args.preset}-random")
    if args.measure:
        measure(path, args.dtype)
        return
    if not (path / "config.json").is_file():
        write_checkpoint(args.preset, path)
    subprocess.run([sys.executable, __file__, "--measure", "--dir", str(path), "--dtype", args.dtype], check=True)


if __name__ == "__main__":
    main()
