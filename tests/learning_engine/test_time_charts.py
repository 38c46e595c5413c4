"""A line chart over time (``learning_engine.charts``, ``time_x``): points placed by when they
happened, ticks on whole UTC steps; monitoring's charts use it for the snapshots' history."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from learning_engine.charts import TIME_TICKS, line_chart
from monitoring.figures import charts

T0 = dt.datetime(2026, 12, 7, 14, 3, 27, tzinfo=dt.UTC)


def test_points_are_placed_by_time_not_by_their_order():
    moments = [T0, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=4)]
    chart = line_chart([("accuracy", [(moment, 0.9) for moment in moments])], title="t", time_x=True)
    first, second, third = (marker.x for marker in chart.series[0].markers)
    assert abs((third - second) - 3 * (second - first)) < 0.05  # three hours against one
    assert chart.series[0].markers[0].title == "accuracy, 2026-12-07 14:03 UTC: 0.9"


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**9),
    st.lists(st.integers(min_value=0, max_value=5 * 366 * 86400), min_size=1, max_size=30),
)
def test_a_time_axis_has_two_to_six_distinct_ticks_around_every_point(start, offsets):
    moments = [dt.datetime.fromtimestamp(start + offset, tz=dt.UTC) for offset in offsets]
    chart = line_chart([("a", [(moment, 0.5) for moment in moments])], title="t", time_x=True)
    ticks = chart.x_ticks
    assert 2 <= len(ticks) <= TIME_TICKS
    assert len({tick.label for tick in ticks}) == len(ticks)
    assert ticks[0].position == chart.left
    assert ticks[-1].position == chart.right
    assert all(chart.left <= marker.x <= chart.right for marker in chart.series[0].markers)


def snapshot(computed_at: dt.datetime, accuracy: float) -> SimpleNamespace:
    return SimpleNamespace(
        computed_at=computed_at,
        live_accuracy=accuracy,
        accuracy_low=accuracy - 0.05,
        accuracy_high=accuracy + 0.05,
        offline_accuracy=0.9,
        tolerance=0.05,
        psi_threshold=0.25,
        drift={"age": {"psi": 0.1}},
    )


def test_monitoring_charts_put_the_snapshots_on_a_time_axis():
    # Two snapshots an hour apart, then one three days later: the gap shows.
    history = [
        snapshot(T0, 0.9),
        snapshot(T0 + dt.timedelta(hours=1), 0.88),
        snapshot(T0 + dt.timedelta(days=3), 0.7),
    ]
    drawn = charts(history)  # type: ignore[arg-type]
    for chart in drawn.values():
        assert chart.x_label == "computed (UTC)"
        xs = [marker.x for marker in chart.series[0].markers]
        assert xs[2] - xs[1] > 50 * (xs[1] - xs[0])
        assert chart.x_ticks[0].label == "Dec 7"


def test_moments_at_the_ends_of_the_calendar_still_draw():
    # The axis widens to whole steps: past 9999-12-31 or before 0001-01-01 a tick has no date to
    # show, and the admin's monitoring page must not answer 500 for it.
    last, first = dt.datetime.max.replace(tzinfo=dt.UTC), dt.datetime.min.replace(tzinfo=dt.UTC)
    for moments in ([last - dt.timedelta(minutes=30), last], [first, first + dt.timedelta(minutes=30)], [first, last]):
        chart = line_chart([("accuracy", [(moment, 0.9) for moment in moments])], title="t", time_x=True)
        assert len(chart.series[0].markers) == len(moments)
        assert any(tick.label for tick in chart.x_ticks)
