"""Baselines measured beside the engine in the same run (STYLE.md rule 9)."""
