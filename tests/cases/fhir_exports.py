"""FHIR exports in the shape Synthea and record systems write them, generated for the tests."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

from cases.dictionary.definition import Definition, parse_definition
from cases.dictionary.files import DEMO_DIRECTORY, read_file
from cases.fhir import synthetic

RESPIRATORY: Definition = parse_definition(read_file(DEMO_DIRECTORY / "respiratory.json")["dictionary"])
SOURCE = "synthea"
LABS = ("wbc", "crp", "nt_probnp")
# Resource types Synthea writes beside the four the engine reads.
OTHER_TYPES = ("Claim", "ExplanationOfBenefit", "Immunization", "MedicationRequest", "Provenance", "Organization")


def records(patients: int = 4, encounters_per_patient: int = 3, *, seed: int = 7) -> list[dict[str, Any]]:
    """Interchange records: several encounters per patient, labs missing in about half."""
    rng = random.Random(seed)
    out = []
    for p in range(patients):
        birth = dt.date(1940 + p, 1 + p % 12, 1 + p % 27)
        for e in range(encounters_per_patient):
            findings: dict[str, float] = {
                "temperature_c": round(rng.uniform(36.2, 39.8), 1),
                "heart_rate": rng.randint(60, 130),
                "respiratory_rate": rng.randint(12, 32),
                "spo2": rng.randint(86, 100),
                "systolic_bp": rng.randint(95, 170),
            }
            if rng.random() < 0.5:
                findings.update(
                    {
                        "wbc": round(rng.uniform(4, 18), 1),
                        "crp": rng.randint(1, 200),
                        "nt_probnp": rng.randint(20, 3000),
                    }
                )
            out.append(
                {
                    "external_id": f"enc-{p}-{e}",
                    "source": SOURCE,
                    "cohort": "respiratory",
                    "patient": {
                        "mrn": f"MRN-{90210 + p}",
                        "name": f"Quilla{chr(65 + p)} Brannigan{chr(65 + p)}",
                        "birth_date": birth.isoformat(),
                        "sex": ("female", "male")[p % 2],
                        "zip": f"021{p:02d}",
                        "address": f"{10 + p} Larkspur Row",
                        "phone": f"617-555-01{p:02d}",
                        "ssn": f"999-0{p}-12{p:02d}",
                    },
                    "encounter_date": (dt.date(2025, 1, 10) + dt.timedelta(days=40 * e + p)).isoformat(),
                    "findings": findings,
                    "symptoms": rng.sample(["cough", "fever", "dyspnea"], k=rng.randint(1, 3)),
                    "diagnosis": {"code": rng.choice(["J18.9", "J06.9", "U07.1"]), "label": ""},
                }
            )
    return out


def synthea_resources(items: list[dict[str, Any]], *, bundle: bool = True) -> list[dict[str, Any]]:
    """Synthea's order and extras: Patient, then per encounter its resources, a Claim, an
    ExplanationOfBenefit and others the engine does not use; temperatures in Fahrenheit and CRP in
    mg/dL every other encounter (units that need conversion)."""
    out: list[dict[str, Any]] = []
    for index, resource in enumerate(synthetic.resources_of(items, RESPIRATORY, bundle=bundle)):
        out.append(resource)
        if resource["resourceType"] == "Observation" and index % 2 == 0:
            _convert_units(resource)
        if resource["resourceType"] == "Encounter":
            for kind in OTHER_TYPES[1:]:
                out.append({"resourceType": kind, "id": synthetic.resource_id(resource["id"], kind)})
    return out


def _convert_units(observation: dict[str, Any]) -> None:
    quantity = observation.get("valueQuantity")
    if not quantity:
        return
    code = observation["code"]["coding"][0]["code"]
    if code == "8310-5":  # Cel -> [degF]
        quantity.update(value=round(quantity["value"] * 9 / 5 + 32, 4), unit="degF", code="[degF]")
    elif code == "1988-5":  # mg/L -> mg/dL
        quantity.update(value=quantity["value"] / 10, unit="mg/dL", code="mg/dL")


def write_bundle(path: Path, items: list[dict[str, Any]], *, kind: str = "transaction") -> Path:
    path.write_text(json.dumps(synthetic.bundle(synthea_resources(items), kind=kind)))
    return path


def write_ndjson(folder: Path, items: list[dict[str, Any]]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in synthetic.ndjson(synthea_resources(items, bundle=False)).items():
        (folder / name).write_text(text)
    return folder
