"""Service calls as a record system sends them: a patient's Patient and latest Observations as
prefetch (``cases.fhir.synthetic`` writes them as Synthea does, blood pressure as a panel)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from cases.dictionary.checking import current_dictionary
from cases.fhir import synthetic
from tests.models_registry.serving.factories import PNEUMONIA_FEATURES

PATIENT_RECORD: dict[str, Any] = {
    "source": "ehr",
    "external_id": "enc-1",
    "patient": {"mrn": "MRN-0042", "name": "Ada Quinn", "birth_date": "1955-03-02", "sex": "female"},
    "encounter_date": "2026-12-01",
    "findings": dict(PNEUMONIA_FEATURES["findings"]),
}


def definition() -> Any:
    dictionary = current_dictionary("respiratory")
    assert dictionary is not None
    return dictionary.parsed


def _codes(resource: dict[str, Any]) -> set[str]:
    codes = {coding["code"] for coding in resource["code"]["coding"]}
    for component in resource.get("component", []):
        codes |= {coding["code"] for coding in component["code"]["coding"]}
    return codes


def prefetch(record: dict[str, Any] | None = None, *, null: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
    """(patient id, prefetch) of ``record``: every model input's search as a searchset Bundle of
    its Observation, the keys in ``null`` as null (the record system has no such data)."""
    record = copy.deepcopy(record or PATIENT_RECORD)
    patient = synthetic.patient_resource(record)
    found = synthetic.encounter_resources(record, definition(), patient_id=patient["id"], bundle=False)
    observations = [resource for resource in found if resource["resourceType"] == "Observation"]
    data: dict[str, Any] = {"patient": patient}
    for finding in definition().findings:
        if not (finding.used_by_model and finding.loinc):
            continue
        key = f"obs-{finding.key}"
        matching = [obs for obs in observations if finding.loinc in _codes(obs)]
        data[key] = (
            None
            if finding.key in null
            else {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(matching),
                "entry": [
                    {"fullUrl": f"https://ehr.example.org/fhir/Observation/{o['id']}", "resource": o} for o in matching
                ],
            }
        )
    return patient["id"], data


def call(hook: str = "patient-view", **changes: Any) -> dict[str, Any]:
    patient_id, data = prefetch()
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id, "encounterId": "enc-1"},
        "prefetch": data,
    }
    if hook == "order-select":
        body["context"]["selections"] = ["ServiceRequest/chest-xray"]
        body["context"]["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "ServiceRequest", "id": "chest-xray", "status": "draft"}}],
        }
    body.update(changes)
    return body
