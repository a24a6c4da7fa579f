"""Benchmarks: ratios and timings side by side in one run, medians of several rounds."""
