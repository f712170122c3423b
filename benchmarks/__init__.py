"""Benchmarks of the sync engine and the cache reads, each measured beside a baseline in the same run.

``python -m benchmarks.run --quick`` (CI-sized, a few minutes) or ``--full`` (the real measurement,
``benchmarks/results/latest.json`` and ``benchmarks/RESULTS.md``). The simulator runs in its own
process, DynamoDB is dynalite when node is installed (else moto), and every measured variant runs
in a fresh worker process so its CPU time and peak RSS are its own.
"""
