"""Comparing eval results and bench rows: deltas, paired intervals, CI gates and the comparison report."""
