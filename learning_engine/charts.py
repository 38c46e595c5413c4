"""Line charts for the admin, drawn on the server as inline SVG (``admin/includes/line_chart.html``).

The companion of ``admin_helpers.bar_chart``: no JavaScript and no CDN, so a page works offline
and under a strict Content-Security-Policy. ``line_chart`` computes the geometry only; the template
draws it. A missing value (``None``, NaN, infinity) breaks a line instead of pretending to be 0.

Usage::

    chart = line_chart(
        [("train loss", [(1, 0.9), (2, 0.7)]), ("validation loss", [(1, 1.0), (2, 0.8)])],
        title="Loss per epoch", x_label="epoch",
    )
    {% include "admin/includes/line_chart.html" with chart=chart %}
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Colour and dash pattern per series, in order: the dash keeps series apart without colour.
PALETTE = (
    ("#417690", ""),
    ("#c0392b", "6 4"),
    ("#2e8b57", "2 3"),
    ("#8e44ad", "8 3 2 3"),
    ("#b9770e", "1 2"),
)
# Beyond this many points per series the markers (with their hover titles) would only be clutter.
MAX_MARKERS = 60
MAX_X_TICKS = 10
Y_TICKS = 5
# The legend's column: at least this wide, wider for long names ("findings.respiratory_rate (0.288)"
# ran past the SVG's edge and was cut). A generous average width of an 11 px sans-serif character.
LEGEND_MIN_WIDTH = 200.0
LEGEND_CHAR_WIDTH = 6.6


@dataclass(frozen=True, slots=True)
class Marker:
    x: float
    y: float
    title: str


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    colour: str
    dash: str
    segments: list[str]  # SVG polyline ``points`` strings; one per unbroken run of values
    markers: list[Marker]
    last: str  # the last defined value, formatted ("" when none)
    legend_y: float


@dataclass(frozen=True, slots=True)
class Tick:
    label: str
    position: float


@dataclass(frozen=True, slots=True)
class LineChart:
    title: str
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    x_label: str
    y_label: str
    legend_x: float
    empty: bool

    # Offsets the template would otherwise compute (Django's ``add`` filter truncates floats).
    @property
    def y_tick_label_x(self) -> float:
        return self.left - 6

    @property
    def x_tick_end(self) -> float:
        return self.bottom + 4

    @property
    def x_tick_label_y(self) -> float:
        return self.bottom + 16

    @property
    def x_label_y(self) -> float:
        return self.height - 6

    @property
    def y_label_y(self) -> float:
        return self.top - 12

    @property
    def legend_line_end(self) -> float:
        return self.legend_x + 22

    @property
    def legend_text_x(self) -> float:
        return self.legend_x + 28


def _finite(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) that cuts ``span`` into about ``count`` parts."""
    if span <= 0 or count <= 0:
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


# Steps of a time axis (seconds): the smallest that gives at most TIME_TICKS ticks once the axis is
# widened to whole steps. Ticks fall on whole multiples of the step in UTC (midnight for days) and
# are labelled to its precision; fewer than on a number axis, as "Dec 17 14:30" is a wide label.
TIME_TICKS = 6
_MINUTE, _HOUR, _DAY = 60, 3600, 86400
TIME_STEPS = (
    *(_MINUTE * n for n in (1, 5, 15, 30)),
    *(_HOUR * n for n in (1, 3, 6, 12)),
    *(_DAY * n for n in (1, 2, 7, 14, 28, 91, 182, 364)),
)


def time_step(span: float) -> float:
    """The time axis step (seconds) for data spanning ``span`` seconds: the axis widened to whole
    steps on both sides has at most ``TIME_TICKS`` ticks."""
    fits = TIME_TICKS - 3  # widening adds at most two steps, and n steps have n + 1 ticks
    for step in TIME_STEPS:
        if span / step <= fits:
            return float(step)
    return float(math.ceil(span / fits / TIME_STEPS[-1]) * TIME_STEPS[-1])


def _utc(seconds: float) -> dt.datetime | None:
    """The UTC moment of POSIX ``seconds``; None past the calendar's ends (a whole step past
    9999-12-31 or before year 1, or 9999-12-31 23:59:59.999999 itself rounded up as a float)."""
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (OverflowError, ValueError, OSError):
        return None


def time_label(seconds: float, step: float) -> str:
    """A tick of a time axis in UTC, as precise as ``step`` asks: "Dec 7 14:30" (steps below a day),
    "Dec 7" (below a quarter), "Dec 2026" (a quarter and more: no two ticks share a month); no label
    where the calendar has no date (the axis widened past its ends)."""
    moment = _utc(seconds)
    if moment is None:
        return ""
    if step < _DAY:
        return f"{moment:%b} {moment.day} {moment:%H:%M}"
    if step < 91 * _DAY:
        return f"{moment:%b} {moment.day}"
    return f"{moment:%b %Y}"


def _format(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    return f"{value:.{min(decimals, 6)}f}"


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float | dt.datetime, object]]]],
    *,
    title: str,
    width: int = 680,
    height: int = 280,
    x_label: str = "",
    y_label: str = "",
    y_min: float | None = None,
    y_max: float | None = None,
    integer_x: bool = True,
    time_x: bool = False,
) -> LineChart:
    """The geometry of a line chart: one line per ``(name, [(x, y), ...])``.

    ``y_min``/``y_max`` pin the axis (0 and 1 for an accuracy); otherwise it spans the data with
    round ticks. ``integer_x`` keeps x ticks on whole numbers (epochs). ``time_x``: x is a moment
    (an aware datetime, or POSIX seconds), placed by time and labelled in UTC (``time_label``).
    """
    if time_x:
        series = [
            (name, [(x.timestamp() if isinstance(x, dt.datetime) else x, y) for x, y in points])
            for name, points in series
        ]
    cleaned = [
        (str(name), [(fx, _finite(y)) for x, y in points if (fx := _finite(x)) is not None]) for name, points in series
    ]
    xs = [x for _name, points in cleaned for x, _y in points]
    ys = [y for _name, points in cleaned for _x, y in points if y is not None]
    lasts = [next((f"{y:.3g}" for _x, y in reversed(points) if y is not None), "") for _name, points in cleaned]
    longest = max(
        (len(name) + (len(last) + 3 if last else 0) for (name, _p), last in zip(cleaned, lasts, strict=True)), default=0
    )
    legend_width = max(LEGEND_MIN_WIDTH, 28 + 8 + LEGEND_CHAR_WIDTH * longest)
    width = int(width + legend_width - LEGEND_MIN_WIDTH)  # the plot keeps its width; the legend grows
    left, top, bottom_margin = 56.0, 28.0, 40.0
    right = width - legend_width - 12.0
    bottom = height - bottom_margin
    empty = not ys

    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if time_x:  # the axis runs from a whole step to a whole step: every chart has ticks to read
        x_step = time_step(x_high - x_low)
        x_low, x_high = math.floor(x_low / x_step) * x_step, math.ceil(x_high / x_step) * x_step
        if x_high == x_low:
            x_high += x_step
    elif x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    data_low = min(ys) if ys else 0.0
    data_high = max(ys) if ys else 1.0
    low = y_min if y_min is not None else data_low
    high = y_max if y_max is not None else data_high
    low, high = min(low, data_low), max(high, data_high)  # data outside a pinned range still shows
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    y_step = nice_step(high - low, Y_TICKS)
    if y_min is None:
        low = math.floor(low / y_step) * y_step
    if y_max is None:
        high = math.ceil(high / y_step) * y_step

    def sx(x: float) -> float:
        return round(left + (x - x_low) / (x_high - x_low) * (right - left), 2)

    def sy(y: float) -> float:
        return round(bottom - (y - low) / (high - low) * (bottom - top), 2)

    y_ticks = []
    tick = math.ceil(low / y_step - 1e-9) * y_step
    while tick <= high + y_step * 1e-9:
        y_ticks.append(Tick(label=_format(tick, y_step), position=sy(tick)))
        tick += y_step
    if not time_x:
        x_step = nice_step(x_high - x_low, MAX_X_TICKS)
        if integer_x:
            x_step = max(1.0, round(x_step))

    def x_text(x: float, step: float) -> str:
        return time_label(x, step) if time_x else _format(x, step)

    x_ticks = []
    tick = math.ceil(x_low / x_step - 1e-9) * x_step
    while tick <= x_high + x_step * 1e-9:
        x_ticks.append(Tick(label=x_text(tick, x_step), position=sx(tick)))
        tick += x_step

    drawn = []
    for index, (name, points) in enumerate(cleaned):
        colour, dash = PALETTE[index % len(PALETTE)]
        segments: list[str] = []
        run: list[str] = []
        markers: list[Marker] = []
        for x, y in points:
            if y is None:
                if run:
                    segments.append(" ".join(run))
                run = []
                continue
            run.append(f"{sx(x)},{sy(y)}")
            moment = _utc(x) if time_x else None
            where = f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else f"{x:g}"
            markers.append(Marker(x=sx(x), y=sy(y), title=f"{name}, {where}: {y:.4g}"))
        if run:
            segments.append(" ".join(run))
        drawn.append(
            Series(
                name=name,
                colour=colour,
                dash=dash,
                segments=segments,
                markers=markers if len(markers) <= MAX_MARKERS else [],
                last=lasts[index],
                legend_y=round(top + 8 + index * 20, 2),
            )
        )
    return LineChart(
        title=title,
        width=width,
        height=height,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        series=drawn,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        x_label=x_label,
        y_label=y_label,
        legend_x=right + 16,
        empty=empty,
    )
