"""`python -m qwen3vl_eval ...`, the same CLI as `qwen3vl-eval` (and what `torchrun -m qwen3vl_eval` runs)."""

from qwen3vl_eval.cli import app

if __name__ == "__main__":
    app(prog_name="qwen3vl-eval")
