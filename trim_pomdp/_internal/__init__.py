"""Helpers shared across the package (not public API): artifacts, optional imports, JSONL, simplex geometry."""
