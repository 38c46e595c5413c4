"""Import: ``manage.py import_cases`` of 100,000 generated cases versus a bare ``bulk_create``.

The baseline is the faster of two bare ``Case.objects.bulk_create`` calls over the same rows,
pre-built (parsed, scored and hashed before the clock starts): with Django's default batch size
and with the import's chunk size. The pre-built objects are frozen out of the garbage collector,
which would otherwise walk all of them on every full collection and slow the baseline down. The
import does everything for real: reads and parses the file, validates, scores, hashes, looks up
existing cases, inserts the cases and one audit row per case, one transaction per chunk.
Goal (issue #2): at most 3x.
"""

from __future__ import annotations

import gc

from benchmarks import casegen
from benchmarks.harness import Result, Timing, timer
from cases import importing
from cases.interchange import parse_line
from cases.models import Case, CaseTransition

GOAL = 3.0
# Each side is the best of two runs (the baseline of its two batch sizes), the usual way to keep
# other busy processes on the machine from deciding the ratio.
IMPORT_RUNS = 2
ORDER = 10  # before bench_deid, which reuses this run's import time


def baseline_bulk_create() -> tuple[Timing, str]:
    """The fastest bare bulk_create of the dataset, and what each variant took."""
    path, _ = casegen.dataset()
    user = casegen.submitter()
    with path.open("rb") as lines:
        cases = [Case.build(parse_line(line), by=user) for line in lines]
    timings: dict[str, Timing] = {}
    gc.collect()
    gc.freeze()
    try:
        for label, batch_size in (("default batch", None), (f"batch {importing.CHUNK_SIZE}", importing.CHUNK_SIZE)):
            casegen.clear_cases()
            for case in cases:
                case.pk = None
                case._state.adding = True
            with timer() as timing:
                Case.objects.bulk_create(cases, batch_size=batch_size)
            timings[label] = timing
    finally:
        gc.unfreeze()
        del cases
        gc.collect()
    casegen.clear_cases()
    detail = ", ".join(f"{label} {timing.wall:.2f} s" for label, timing in timings.items())
    return min(timings.values(), key=lambda timing: timing.wall), detail


def run() -> list[Result]:
    path, n = casegen.dataset()
    baseline, detail = baseline_bulk_create()

    runs = []
    for _ in range(IMPORT_RUNS):
        runs.append(casegen.timed_import())
        cases, audits = Case.objects.count(), CaseTransition.objects.count()
        if cases != n or audits != n:
            raise RuntimeError(f"The import made {cases} cases and {audits} audit rows, expected {n} of each.")
    first = min(runs, key=lambda timing: timing.wall)

    again = casegen.run_import(path)
    if Case.objects.count() != n:
        raise RuntimeError("Re-importing the same file changed the number of cases.")

    return [
        Result(
            f"import_cases: {n:,} new cases",
            first.wall,
            "s",
            baseline=baseline.wall,
            max_ratio=GOAL,
            note=(
                f"{n / first.wall:,.0f} cases/s; CPU-time ratio {first.cpu / baseline.cpu:.2f}x; "
                f"import runs {', '.join(f'{run.wall:.2f} s' for run in runs)}; baseline bulk_create: {detail}"
            ),
        ),
        Result(
            f"import_cases: the same {n:,} again (unchanged)",
            again.wall,
            "s",
            baseline=baseline.wall,
            note=f"{n / again.wall:,.0f} lines/s; no duplicates",
        ),
    ]
