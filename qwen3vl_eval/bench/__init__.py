"""Throughput benchmarks: inputs, measurement, rooflines and the bench report."""
