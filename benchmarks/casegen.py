"""Fast generation of realistic interchange records for the benchmarks.

Faker is too slow to call a million times, so it fills small pools (names, streets, cities) once
with a fixed seed, and ``random`` combines them: 100,000 records take a few seconds, every
record has the full patient block, and its note names the patient (so de-identification has
real work to do).
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faker import Faker

from benchmarks import harness

SEED = 20260502
SOURCE = "bench-hospital"
COHORT = "respiratory"

# (code, label, typical findings, typical symptoms): findings depend on the diagnosis, as in life.
# Keys and codes are the shipped respiratory dictionary's (cases/dictionaries/respiratory.json), so
# every record passes the import's dictionary check.
DIAGNOSES: list[tuple[str, str, dict[str, tuple[float, float]], list[str]]] = [
    (
        "J18.9",
        "Pneumonia, unspecified organism",
        {"temperature_c": (38.0, 40.0), "heart_rate": (95, 130), "spo2": (86, 94), "wbc": (11, 20)},
        ["cough", "fever", "dyspnea", "pleuritic_chest_pain"],
    ),
    (
        "J06.9",
        "Acute upper respiratory infection, unspecified",
        {"temperature_c": (37.0, 38.5), "heart_rate": (70, 100), "spo2": (95, 100), "wbc": (5, 11)},
        ["cough", "sore_throat", "rhinorrhea"],
    ),
    (
        "J45.909",
        "Unspecified asthma, uncomplicated",
        {"temperature_c": (36.4, 37.4), "heart_rate": (80, 120), "spo2": (90, 97), "wbc": (5, 10)},
        ["wheeze", "dyspnea", "chest_tightness"],
    ),
    (
        "J44.1",
        "Chronic obstructive pulmonary disease with acute exacerbation",
        {"temperature_c": (36.5, 38.0), "heart_rate": (85, 120), "spo2": (84, 92), "wbc": (7, 14)},
        ["dyspnea", "cough", "sputum"],
    ),
]


class _Pools:
    def __init__(self, seed: int) -> None:
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.first = [fake.first_name() for _ in range(400)]
        self.last = [fake.last_name() for _ in range(600)]
        self.streets = [fake.street_name() for _ in range(300)]
        self.cities = [(fake.city(), fake.state_abbr(), fake.zipcode()) for _ in range(200)]


def records(n: int, *, seed: int = SEED, source: str = SOURCE) -> Iterator[dict[str, Any]]:
    """``n`` interchange records with unique external ids and MRNs (deterministic for a seed)."""
    rng = random.Random(seed)
    pools = _Pools(seed)
    today = dt.date.today()
    for i in range(n):
        first, last = rng.choice(pools.first), rng.choice(pools.last)
        city, state, zip_code = rng.choice(pools.cities)
        address = f"{rng.randint(1, 9999)} {rng.choice(pools.streets)}, {city}, {state} {zip_code}"
        phone = f"+1 {rng.randint(201, 989)} 555 {rng.randint(0, 9999):04d}"
        mrn = f"MRN-{i + 1:08d}"
        encounter = today - dt.timedelta(days=rng.randint(1, 3 * 365))
        # Ages 18..100, so the "90+" band occurs.
        birth = encounter - dt.timedelta(days=rng.randint(18 * 365, 100 * 365))
        code, label, ranges, symptom_pool = rng.choice(DIAGNOSES)
        findings = {key: round(rng.uniform(low, high), 1) for key, (low, high) in ranges.items()}
        symptoms = rng.sample(symptom_pool, k=rng.randint(1, len(symptom_pool)))
        note = (
            f"{first} {last} ({mrn}) seen on {encounter.isoformat()} with {', '.join(symptoms).replace('_', ' ')}. "
            f"Temperature {findings['temperature_c']} C, SpO2 {findings['spo2']}%. "
            f"Lives at {address}; call {phone} or {first.lower()}.{last.lower()}@example.org with results."
        )
        yield {
            "external_id": f"enc-{i + 1:08d}",
            "source": source,
            "cohort": COHORT,
            "patient": {
                "mrn": mrn,
                "name": f"{first} {last}",
                "birth_date": birth.isoformat(),
                "sex": rng.choice(("female", "male")),
                "zip": zip_code,
                "phone": phone,
                "email": f"{first.lower()}.{last.lower()}@example.org",
                "address": address,
                "ssn": f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
            },
            "encounter_date": encounter.isoformat(),
            "findings": findings,
            "symptoms": symptoms,
            "note": note,
            "diagnosis": {"code": code, "label": label},
        }


def write_jsonl(path: Path, n: int, **kwargs: Any) -> Path:
    """Write ``n`` records as JSON Lines (UTF-8) to ``path``."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with path.open("w", encoding="utf-8") as out:
        for record in records(n, **kwargs):
            out.write(dumps(record))
            out.write("\n")
    return path


# --- Shared by the case benchmarks --------------------------------------------------------------

CASES = 100_000  # the size; BENCH_SCALE shrinks it


@functools.cache
def cohort_dictionary() -> Any:
    """The records' cohort with its shipped dictionary, published (once per run): imports refuse a
    cohort without one, and a model version of the cohort records it and checks predictions
    against it, as on a site that loaded it with ``manage.py load_dictionary``."""
    from cases.dictionary.files import DEMO_DIRECTORY, load_file

    return load_file(DEMO_DIRECTORY / f"{COHORT}.json").dictionary


@functools.cache
def dataset() -> tuple[Path, int]:
    """The generated JSON Lines file of this run and its number of records (made once per run)."""
    cohort_dictionary()
    n = harness.scaled(CASES)
    return write_jsonl(harness.workdir() / f"cases-{n}.jsonl", n), n


@functools.cache
def submitter() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("bench-importer")


def clear_cases() -> None:
    """Empty the case tables and compact the file, so each timed run starts from the same state."""
    from django.db import connection

    from cases.models import Case, CaseTransition

    with connection.cursor() as cursor:
        for model in (CaseTransition, Case):
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)}")
        if connection.vendor == "sqlite":
            cursor.execute("VACUUM")


def run_import(path: Path) -> harness.Timing:
    """The time of ``manage.py import_cases path`` (quiet); raises if a line failed."""
    from django.core.management import call_command

    gc.collect()
    with harness.timer() as timing:
        call_command(
            "import_cases",
            str(path),
            submitted_by=submitter().get_username(),
            verbosity=0,
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
    return timing


_import_timing: harness.Timing | None = None


def timed_import() -> harness.Timing:
    """Import the run's dataset into empty tables and time it; remembered for ``import_timing``."""
    global _import_timing
    path, _ = dataset()
    clear_cases()
    _import_timing = run_import(path)
    return _import_timing


def import_timing() -> harness.Timing:
    """The import time of this run: the one measured already, else measured now."""
    return _import_timing if _import_timing is not None else timed_import()
