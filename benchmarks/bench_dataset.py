"""Dataset preparation: ``build_snapshot`` of 100,000 approved cases versus a bare read of the same rows.

Throughput: the build (select, split, write Parquet, scan every string of the file for residual
identifiers, check that no case changed, store) against a bare read of the same cases in the same
run: ``selected_cases(filters).values_list("id", "deidentified")`` iterated in chunks of 2,000,
i.e. the same selection query, each row's whole de-identified record fetched and decoded from JSON
by the ``JSONField`` into a dict, and nothing done with it (the faster of two reads, after a
warm-up read). Both report wall and CPU time; the goal judges wall time. Goal (issue #3): the build runs at
least half the bare read's rows per second, i.e. takes at most 2x its time.

Memory: the peak RSS of a process that builds a snapshot of 20,000 cases and of one that builds a
snapshot of 200,000 cases (each a fresh ``python`` child, reporting its own ``VmHWM``: ``ru_maxrss`` would report the
benchmark process's peak, which a child inherits across ``exec`` on Linux). Goal:
the larger at most 1.5x the smaller, i.e. memory does not grow with the number of cases beyond the
few bytes a case the split needs.

Set-up: one cohort of 200,000 approved cases, bulk-created. De-identifying 200,000 records would
take over a minute (``bench_deid`` measures it), so a pool of real records is de-identified once
per encounter year with ``cases.deid.records.deidentify`` and each case copies one of them with its own
MRN, external id and pseudonym (the note, which names the MRN, is rewritten to match; the MRN never
reaches the de-identified record). Quality score and content hash are the template's. Encounter
years select the sizes: the first 20,000 cases are in one year, the next 80,000 in the next, the
rest in a third, so the 20,000 and 100,000 builds are the 200,000 with an encounter-date filter.
Each case also gets what approval stores beside its record (``derived.approval_columns``: the
record's sha256, its dataset row, its patient's residual keys), computed for that case. The scan
cannot take a shortcut from the shared templates: it rules each case's own identifiers out by its
own keys, or matches them against its raw patient block, case by case.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import casegen
from benchmarks.harness import Result, Timing, scaled, timer, workdir

ROWS_GOAL = 2.0  # build time / bare read time: half the rows per second
MEMORY_GOAL = 1.5
COHORT = "bench-dataset"
SOURCE = "bench-dataset"
POOL = 300  # distinct de-identified templates per encounter year
BATCH = 5000

SMALL, MEDIUM, LARGE = 20_000, 100_000, 200_000
ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh interpreter: Django set up from the environment the harness exported, one build,
# then the process's own peak RSS (KiB, VmHWM: not the parent's) and the build time as JSON on stdout.
CHILD = """
import json, sys, time
import django
from benchmarks.harness import peak_rss_kib
django.setup()
from training.datasets import build_snapshot
start = time.perf_counter()
snapshot = build_snapshot(int(sys.argv[1]))
print(json.dumps({
    "seconds": time.perf_counter() - start,
    "status": snapshot.status,
    "cases": snapshot.case_count,
    "maxrss_kib": peak_rss_kib(),
}))
"""


def _years() -> tuple[int, int, int]:
    # Past years, so no case has a future encounter.
    this_year = dt.date.today().year
    return this_year - 3, this_year - 2, this_year - 1


def create_cases(total: int, sizes: tuple[int, int]) -> None:
    """``total`` approved cases of COHORT: ``sizes[0]`` in the first year, up to ``sizes[1]`` in the second."""
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from cases import derived
    from cases.deid import records, safe_harbor
    from cases.interchange import parse_record
    from cases.models import Case

    users = get_user_model().objects
    submitter = users.create_user("bench-dataset-submitter")
    reviewer = users.create_user("bench-dataset-reviewer")
    key = settings.PSEUDONYM_KEY
    raw = list(casegen.records(POOL, source=SOURCE))
    templates: dict[int, list[tuple[Any, Case, dict[str, Any]]]] = {}
    for year in _years():
        templates[year] = []
        for item in raw:
            record = parse_record(item)
            record = dataclasses.replace(record, encounter_date=record.encounter_date.replace(year=year, day=1))
            templates[year].append((record, Case.build(record, by=submitter), records.deidentify(record, key=key)))

    first, second = sizes
    batch: list[Case] = []
    for index in range(total):
        year = _years()[0 if index < first else 1 if index < second else 2]
        record, template, deidentified = templates[year][index % POOL]
        mrn = f"BENCH-{index + 1:09d}"
        pseudonym = safe_harbor.pseudonym(SOURCE, mrn, key=key)
        patient = {**record.patient, "mrn": mrn}
        case_record = {**deidentified, "patient_pseudonym": pseudonym}
        batch.append(
            Case(
                source=SOURCE,
                external_id=f"bench-dataset-{index + 1:09d}",
                cohort=COHORT,
                status=Case.Status.APPROVED,
                patient=patient,
                encounter_date=record.encounter_date,
                findings=record.findings,
                symptoms=record.symptoms,
                note=record.note.replace(record.patient["mrn"], mrn),
                diagnosis_code=record.diagnosis_code,
                diagnosis_label=record.diagnosis_label,
                record_hash=template.record_hash,
                quality_score=template.quality_score,
                quality_issues=template.quality_issues,
                submitted_by=submitter,
                reviewed_by=reviewer,
                deidentified=case_record,
                deid_policy_version=safe_harbor.POLICY_VERSION,
                patient_pseudonym=pseudonym,
                # What approval stores beside the record, computed per case as approval does.
                **derived.approval_columns(patient, case_record),
            )
        )
        if len(batch) == BATCH:
            Case.objects.bulk_create(batch)
            batch = []
    if batch:
        Case.objects.bulk_create(batch)


def _model_type() -> Any:
    from training.models import ModelType

    return ModelType.objects.create(
        slug="bench-dataset", name="Benchmark", cohort=COHORT, min_quality=0.0, min_cases_to_train=10
    )


def _up_to(year_index: int) -> dt.date:
    return dt.date(_years()[year_index], 12, 31)


def bare_read(filters: dict[str, Any]) -> tuple[Timing, int]:
    from training.datasets import selected_cases

    gc.collect()
    count = 0
    with timer() as timing:
        for _ in selected_cases(filters).values_list("id", "deidentified").iterator(chunk_size=2000):
            count += 1
    return timing, count


def timed_build(model_type: Any, **filters: Any) -> tuple[Timing, Any, dict[str, float]]:
    import time

    from training.datasets import build_snapshot, create_snapshot

    snapshot = create_snapshot(model_type, by=None, **filters)
    stages: dict[str, float] = {}
    start = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        stages[stage] = time.perf_counter() - start  # the time each stage ends (last call wins)

    gc.collect()
    with timer() as timing:
        snapshot = build_snapshot(snapshot.pk, progress=progress)
    return timing, snapshot, stages


def build_in_child(model_type: Any, **filters: Any) -> dict[str, Any]:
    from training.datasets import create_snapshot

    snapshot = create_snapshot(model_type, by=None, **filters)
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(snapshot.pk)],
        cwd=ROOT,
        env={**os.environ, "MEDIA_ROOT": str(workdir() / "media")},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"The build of {filters or 'all cases'} failed in its process:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _phases(stages: dict[str, float]) -> str:
    previous, parts = 0.0, []
    for stage, end in stages.items():
        parts.append(f"{stage.split(' ')[0].lower()} {end - previous:.2f} s")
        previous = end
    return ", ".join(parts)


def run() -> list[Result]:
    from django.test.utils import override_settings

    small, medium, large = scaled(SMALL), scaled(MEDIUM), scaled(LARGE)
    create_cases(large, (small, medium))
    model_type = _model_type()
    medium_filters: dict[str, Any] = {"encounter_before": _up_to(1)}

    with override_settings(MEDIA_ROOT=str(workdir() / "media")):
        from training.datasets import create_snapshot

        filters = create_snapshot(model_type, by=None, **medium_filters).filters
        bare_read(filters)  # warm-up: the same pages cached for both
        reads = [bare_read(filters) for _ in range(2)]
        read, count = min(reads, key=lambda item: item[0].wall)
        if count != medium:
            raise RuntimeError(f"The bare read saw {count} cases, expected {medium}.")
        build, snapshot, stages = timed_build(model_type, **medium_filters)
        if snapshot.status != "ready" or snapshot.case_count != medium:
            raise RuntimeError(f"The {medium}-case build ended {snapshot.status} with {snapshot.case_count} cases.")

    smaller = build_in_child(model_type, encounter_before=_up_to(0))
    larger = build_in_child(model_type)
    for result, n in ((smaller, small), (larger, large)):
        if result["status"] != "ready" or result["cases"] != n:
            raise RuntimeError(f"A memory build ended {result['status']} with {result['cases']} cases, expected {n}.")

    return [
        Result(
            f"prepare dataset: {medium:,} cases vs bare read",
            build.wall,
            "s",
            baseline=read.wall,
            max_ratio=ROWS_GOAL,
            note=(
                f"{medium / build.wall:,.0f} cases/s against {medium / read.wall:,.0f} rows/s read "
                f"(goal: at least half); CPU-time ratio {build.cpu / read.cpu:.2f}x; phases: {_phases(stages)}"
            ),
        ),
        Result(
            f"prepare dataset: peak RSS {large:,} vs {small:,} cases",
            larger["maxrss_kib"] / 1024,
            "MiB",
            baseline=smaller["maxrss_kib"] / 1024,
            max_ratio=MEMORY_GOAL,
            note=(
                f"each build in its own process; {small:,} cases built in {smaller['seconds']:.1f} s, "
                f"{large:,} in {larger['seconds']:.1f} s"
            ),
        ),
    ]
