"""The benchmark harness: a throwaway database, a scale knob, a timer, and the result table.

Adding a benchmark: create ``benchmarks/bench_<name>.py`` with ``run() -> list[Result]``, sized with
``scaled(n)``. The runner imports the module only after Django is set up (project settings, a
migrated temporary SQLite database), so top-level model imports are fine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

SCALE_ENV = "BENCH_SCALE"


@dataclass
class Result:
    """One row of the table.

    ``measured`` and ``baseline`` are in ``unit``; ``ratio`` is measured / baseline unless given.
    A row with ``max_ratio`` passes when the ratio is at most that, one with ``min_ratio`` (a
    throughput against its baseline's) when it is at least that; a row with neither is
    informational.
    """

    name: str
    measured: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    max_ratio: float | None = None
    note: str = ""
    min_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline:
            self.ratio = self.measured / self.baseline

    @property
    def goal(self) -> str:
        if self.max_ratio is not None:
            return f"<= {self.max_ratio:g}x"
        return f">= {self.min_ratio:g}x" if self.min_ratio is not None else "-"

    @property
    def passed(self) -> bool | None:
        if self.max_ratio is not None:
            return self.ratio is not None and self.ratio <= self.max_ratio
        if self.min_ratio is not None:
            return self.ratio is not None and self.ratio >= self.min_ratio
        return None


def peak_rss_kib() -> int:
    """This process's own peak resident set size in KiB.

    ``VmHWM`` from ``/proc/self/status``: it starts afresh at ``exec``. ``getrusage``'s
    ``ru_maxrss`` does not on Linux: a child started from a large parent reports the parent's
    high-water mark, so a benchmark comparing two children read the parent's size twice. Where
    ``/proc`` is missing (macOS) ``ru_maxrss`` is the fallback, in KiB there too.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss


def scale() -> float:
    """The size factor of every benchmark (``BENCH_SCALE=0.1`` for a quick run)."""
    raw = os.environ.get(SCALE_ENV, "1")
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{SCALE_ENV} must be a number, got {raw!r}.") from None
    if not 0 < value <= 100:
        raise SystemExit(f"{SCALE_ENV} must be in (0, 100], got {raw!r}.")
    return value


def scaled(n: int) -> int:
    """``n`` at the current scale, at least 1."""
    return max(1, round(n * scale()))


@dataclass
class Timing:
    """Wall-clock and process CPU seconds of one measured block.

    Wall time is what the goals judge. CPU time is shown beside it: on a machine shared with other
    busy processes it moves much less than wall time, since this process (and SQLite, which runs
    inside it) waits less for the disk than for the CPU.
    """

    wall: float = 0.0
    cpu: float = 0.0


@contextlib.contextmanager
def timer() -> Iterator[Timing]:
    """``with timer() as t: ...`` then ``t.wall`` and ``t.cpu`` are the elapsed seconds."""
    timing = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield timing
    finally:
        timing.wall = time.perf_counter() - wall
        timing.cpu = time.process_time() - cpu


_workdir: Path | None = None


def workdir() -> Path:
    """A temporary folder for this run (the database, generated files); removed at exit."""
    if _workdir is None:
        raise RuntimeError("django_environment() is not active.")
    return _workdir


@contextlib.contextmanager
def django_environment() -> Iterator[Path]:
    """Set Django up against a fresh, migrated SQLite file in a temporary folder (or, with
    ``BENCH_POSTGRES_URL=postgres://user@host:5432/any``, a fresh database on that server).

    The developer's database is never touched: DATABASE_URL is overridden, not defaulted. DEBUG
    stays off (with DEBUG on Django records every query, which would distort the timings), so
    the secrets get values generated for this run unless the environment already has some
    (never a developer's .env: ENV_FILE is emptied, as in the tests).
    """
    global _workdir
    folder = Path(tempfile.mkdtemp(prefix="learning-engine-bench-"))
    _workdir = folder
    server = os.environ.get("BENCH_POSTGRES_URL", "")
    scratch = f"bench_{secrets.token_hex(6)}" if server else ""
    try:
        if server:  # a database of the run's own on that server, dropped at exit
            _postgres(server, f'CREATE DATABASE "{scratch}"')
            os.environ["DATABASE_URL"] = server.rsplit("/", 1)[0] + "/" + scratch
        else:
            os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'bench.sqlite3'}"
        os.environ["DEBUG"] = "0"
        os.environ["ENV_FILE"] = ""
        os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(48))
        os.environ.setdefault("PSEUDONYM_KEY", secrets.token_urlsafe(48))
        os.environ.setdefault("TASKS_BACKEND", "django.tasks.backends.dummy.DummyBackend")
        os.environ["DJANGO_SETTINGS_MODULE"] = "learning_engine.settings"

        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        yield folder
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if scratch:
            with contextlib.suppress(Exception):
                _postgres(server, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        shutil.rmtree(folder, ignore_errors=True)
        _workdir = None


def _postgres(server: str, statement: str) -> None:
    """Run ``statement`` (CREATE or DROP DATABASE: outside a transaction) on ``server``'s postgres database."""
    import psycopg

    with psycopg.connect(server.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]  # a name we generated, quoted


def _figure(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s"
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def print_table(results: list[Result], out: TextIO = sys.stdout) -> None:
    headers = ("benchmark", "measured", "baseline", "ratio", "goal", "result")
    rows = [
        (
            r.name,
            _figure(r.measured, r.unit),
            _figure(r.baseline, r.unit),
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            r.goal,
            {True: "pass", False: "FAIL", None: "info"}[r.passed],
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip() + "\n"

    out.write(line(headers))
    out.write(line(tuple("-" * w for w in widths)))
    for row in rows:
        out.write(line(row))
    notes = [f"  {r.name}: {r.note}" for r in results if r.note]
    if notes:
        out.write("\nNotes:\n" + "\n".join(notes) + "\n")
