"""De-identification: records per second, and its time as a share of the import's.

De-identification runs when a case is approved, not at import; the share says how much an
approval of every imported case would add to the import's time. No goal yet (issue #2 asks for
the figures).
"""

from __future__ import annotations

from django.conf import settings

from benchmarks import casegen
from benchmarks.harness import Result, timer
from cases.deid.records import deidentify
from cases.interchange import parse_line


def run() -> list[Result]:
    path, n = casegen.dataset()
    with path.open("rb") as lines:
        records = [parse_line(line) for line in lines]
    key = settings.PSEUDONYM_KEY
    with timer() as timing:
        for record in records:
            deidentify(record, key=key)
    seconds = timing.wall

    # Guard against measuring a no-op: the generated notes name their patient.
    sample = records[0]
    if str(sample.patient["name"]) in deidentify(sample, key=key)["note"]:
        raise RuntimeError("De-identification left the patient's name in the note.")

    import_seconds = casegen.import_timing().wall
    return [
        Result("deid: records per second", n / seconds, "rec/s", note=f"{n:,} records in {seconds:.2f} s"),
        Result(
            "deid: share of import time",
            seconds,
            "s",
            baseline=import_seconds,
            note="de-identification time / import_cases time for the same records (added at approval)",
        ),
    ]
