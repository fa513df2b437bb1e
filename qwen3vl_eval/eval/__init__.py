"""The evaluation harness: tasks as YAML data (`task.py`), dataset adapters (`data.py`), named prompts, parsers
and metrics (`prompts.py`, `parsers.py`, `metrics.py`), the resumable runner (`runner.py`), results and reports
(`reports.py`) and the offline synthetic suites (`synth.py`)."""
