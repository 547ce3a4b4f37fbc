"""Observation models: reflected KDE, class-conditional PRM-score densities, ProcessBench loading."""
