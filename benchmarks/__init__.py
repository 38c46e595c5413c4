"""Runnable benchmarks that print ratios against a baseline measured in the same run.

``python -m benchmarks`` runs every ``bench_*`` module; ``python -m benchmarks import deid`` runs
some. A module exposes ``run() -> list[Result]`` (see ``benchmarks.harness``). Timings live here,
never in test asserts.
"""
