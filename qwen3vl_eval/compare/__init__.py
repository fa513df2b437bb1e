"""Comparing eval results and bench rows: `results` reads them, `gates` holds the regression thresholds,
`comparison` pairs a candidate with the baseline (deltas, paired intervals, flips, speed ratios, verdict) and
`render` writes the report (markdown, JSON, charts). The statistics are `report.stats`."""
