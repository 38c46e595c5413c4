"""The benchmark table's goals: at most a ratio (a cost), or at least one (a throughput)."""

from __future__ import annotations

from benchmarks.harness import Result


def test_a_throughput_goal_passes_at_or_above_its_ratio_and_fails_below():
    assert Result("x", 50.0, "cases/s", baseline=100.0, min_ratio=0.5).passed is True
    assert Result("x", 49.0, "cases/s", baseline=100.0, min_ratio=0.5).passed is False
    assert Result("x", 49.0, "cases/s", baseline=100.0, min_ratio=0.5).goal == ">= 0.5x"


def test_a_cost_goal_and_no_goal_are_as_before():
    assert Result("x", 2.0, "s", baseline=1.0, max_ratio=3.0).passed is True
    assert Result("x", 4.0, "s", baseline=1.0, max_ratio=3.0).passed is False
    assert Result("x", 4.0, "s", baseline=1.0).passed is None
    assert Result("x", 4.0, "s", baseline=1.0).goal == "-"
