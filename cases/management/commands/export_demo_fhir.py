"""``manage.py export_demo_fhir FOLDER``: the demo's respiratory encounters as a Synthea-shaped FHIR export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cases.demo import respiratory_records
from cases.dictionary.definition import parse_definition
from cases.dictionary.files import DEMO_DIRECTORY, read_file
from cases.fhir import synthetic

MAX_CASES = 100_000


class Command(BaseCommand):
    help = (
        "Write the demo's synthetic respiratory encounters (the records load_demo makes) as FHIR R4: one "
        "transaction Bundle per patient, named patient-0001.json, ..., as Synthea writes them (or, with "
        "--ndjson, a bulk export: Patient.ndjson, Encounter.ndjson, ...). For trying import_fhir without a "
        "record system. Every identifier in it is fake."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", help="Where to write (created if missing; files there are replaced).")
        parser.add_argument("--cases", type=int, default=200, help=f"Encounters (default 200, at most {MAX_CASES}).")
        parser.add_argument("--ndjson", action="store_true", help="Write NDJSON bulk-export files instead.")

    def handle(self, *args: Any, folder: str, cases: int, ndjson: bool, verbosity: int, **options: Any) -> None:
        if not 1 <= cases <= MAX_CASES:
            raise CommandError(f"--cases must be between 1 and {MAX_CASES}.")
        out = Path(folder)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"Cannot create {folder}: {exc.strerror or exc}") from None
        definition = parse_definition(read_file(DEMO_DIRECTORY / "respiratory.json")["dictionary"])
        records = list(respiratory_records(cases))
        if ndjson:
            for name, text in synthetic.ndjson(synthetic.resources_of(records, definition, bundle=False)).items():
                (out / name).write_text(text, encoding="utf-8")
            written = "NDJSON files"
        else:
            by_patient: dict[str, list[dict[str, Any]]] = {}
            for record in records:
                by_patient.setdefault(record["patient"]["mrn"], []).append(record)
            for number, items in enumerate(by_patient.values(), start=1):
                bundle = synthetic.bundle(synthetic.resources_of(items, definition))
                (out / f"patient-{number:04d}.json").write_text(json.dumps(bundle), encoding="utf-8")
            written = f"{len(by_patient)} Bundles"
        if verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(f"{len(records)} encounters written to {folder} as {written}."))
