"""qwen3vl-eval: a reference Qwen3-VL implementation in PyTorch and an evaluation harness around it."""

__version__ = "0.1.0"
