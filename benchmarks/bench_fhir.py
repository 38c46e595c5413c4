"""FHIR import: ``manage.py import_fhir`` of a Synthea-shaped Bundle versus ``import_cases`` of the
same cases as JSON Lines.

The cases are the benchmarks' generated respiratory encounters (``casegen.records``), each a
patient of its own. The FHIR side is one transaction Bundle with what Synthea writes per encounter:
the Patient (MR and SS identifiers, name, telecom, address), the Encounter, an Observation per
finding (LOINC, category, UCUM quantity; temperature in Fahrenheit every other encounter, to be
converted), a SNOMED CT Condition per symptom, the ICD-10-CM Condition and a Claim (skipped). The
JSON Lines side holds exactly the records the FHIR import makes of them (no note: FHIR carries
none here; the dictionary's diagnosis names; only the symptoms the dictionary gives a SNOMED CT
code, in its order), and the run checks that both imports
stored the same content hashes. Both run for real into empty tables: read, validate (fhir.resources
for every used resource), map, check against the dictionary, score, write. Goal (issue 17): the
FHIR import's throughput at least half the JSON Lines import's.
"""

from __future__ import annotations

import gc
import io
import json
from pathlib import Path
from typing import Any

from benchmarks import casegen, harness
from benchmarks.harness import Result, Timing, timer
from cases.fhir import synthetic

GOAL = 0.5  # FHIR cases/s over JSON Lines cases/s, at least
CASES = 20_000  # a Bundle of about 250,000 entries (200 MB); BENCH_SCALE shrinks it
RUNS = 2  # best of two each, as bench_import does
SOURCE = "bench-ehr"


def _records(n: int, definition: Any) -> list[dict[str, Any]]:
    """casegen's records as the FHIR import will store them."""
    out = []
    # A symptom the dictionary gives no SNOMED CT code (sputum, ...) has no FHIR coding to travel in.
    order = [symptom.key for symptom in definition.symptoms if symptom.snomed_ct]
    for record in casegen.records(n, source=SOURCE):
        record.pop("note")
        record["symptoms"] = sorted((key for key in record["symptoms"] if key in order), key=order.index)
        code = record["diagnosis"]["code"]
        record["diagnosis"] = {"code": code, "label": definition.diagnosis_name(code)}
        record["findings"] = {key: float(value) for key, value in record["findings"].items()}
        out.append(record)
    return out


def _fahrenheit(resource: dict[str, Any]) -> None:
    quantity = resource.get("valueQuantity")
    if quantity and quantity.get("code") == "Cel":
        quantity.update(value=round(quantity["value"] * 9 / 5 + 32, 6), unit="degF", code="[degF]")


def write_inputs(n: int) -> tuple[Path, Path, int]:
    """The Bundle and the JSON Lines file of the same ``n`` cases, and the Bundle's entry count."""
    definition = casegen.cohort_dictionary().parsed
    records = _records(n, definition)
    folder = harness.workdir()
    bundle_path, jsonl_path = folder / f"fhir-{n}.json", folder / f"fhir-{n}.jsonl"
    entries = 0
    with bundle_path.open("w", encoding="utf-8") as out:
        out.write('{"resourceType": "Bundle", "type": "transaction", "entry": [')
        for index, resource in enumerate(synthetic.resources_of(records, definition)):
            if resource["resourceType"] == "Observation" and index % 2:
                _fahrenheit(resource)
            entry = {
                "fullUrl": f"urn:uuid:{resource['id']}",
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            out.write(("," if entries else "") + json.dumps(entry, separators=(",", ":")))
            entries += 1
        out.write("]}")
    with jsonl_path.open("w", encoding="utf-8") as out:
        for record in records:
            record["external_id"] = synthetic.resource_id(SOURCE, "encounter", record["external_id"])
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    return bundle_path, jsonl_path, entries


def _import(command: str, path: Path, **options: Any) -> Timing:
    from django.core.management import call_command

    casegen.clear_cases()
    gc.collect()
    with timer() as timing:
        call_command(
            command,
            str(path),
            submitted_by=casegen.submitter().get_username(),
            verbosity=0,
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            **options,
        )
    return timing


def _hashes() -> list[str]:
    from cases.models import Case

    return sorted(Case.objects.values_list("record_hash", flat=True))


def _walls(runs: list[Timing]) -> str:
    return ", ".join(f"{timing.wall:.2f}" for timing in runs)


def run() -> list[Result]:
    n = harness.scaled(CASES)
    bundle_path, jsonl_path, entries = write_inputs(n)
    jsonl_runs, fhir_runs = [], []
    for _ in range(RUNS):
        jsonl_runs.append(_import("import_cases", jsonl_path))
        jsonl_hashes = _hashes()
        fhir_runs.append(_import("import_fhir", bundle_path, source=SOURCE, cohort=casegen.COHORT))
        fhir_hashes = _hashes()
        if len(fhir_hashes) != n or fhir_hashes != jsonl_hashes:
            raise RuntimeError(f"The FHIR import stored {len(fhir_hashes)} cases unlike the JSON Lines import's {n}.")
    jsonl = min(jsonl_runs, key=lambda timing: timing.wall)
    fhir = min(fhir_runs, key=lambda timing: timing.wall)
    size = bundle_path.stat().st_size
    return [
        Result(
            f"import_fhir: {n:,} encounters in one Bundle vs import_cases of the same (throughput)",
            n / fhir.wall,
            "cases/s",
            baseline=n / jsonl.wall,
            min_ratio=GOAL,
            note=(
                f"{entries:,} entries, {size / 1e6:,.0f} MB: {fhir.wall:.2f} s against {jsonl.wall:.2f} s "
                f"(CPU-time ratio {jsonl.cpu / fhir.cpu:.2f}x); runs FHIR {_walls(fhir_runs)} s, "
                f"JSON Lines {_walls(jsonl_runs)} s; same content hashes"
            ),
        )
    ]
