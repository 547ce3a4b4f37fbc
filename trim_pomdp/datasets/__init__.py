"""Data loading: ProcessBench and scored-items files, and the math evaluation sets."""
