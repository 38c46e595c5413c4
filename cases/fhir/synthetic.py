"""FHIR R4 resources in the shape Synthea and record systems export, built from interchange records.

For the tests, the benchmark and anyone trying the FHIR import without a record system: a Patient
with an MR-typed identifier, an SSN, a name, telecom and a home address; an Encounter per case;
one Observation per finding with its LOINC code, a SNOMED CT coded Condition per symptom, vital
signs coded with their category, systolic blood pressure as a component of the blood-pressure
panel (85354-9), as Synthea writes it; a Condition with the ICD-10-CM code and, like Synthea, a
SNOMED CT coding beside it. Resources refer
to each other by ``urn:uuid:`` in a Bundle and by ``Type/id`` in NDJSON, as the two exports do.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cases.dictionary.definition import Definition

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
BP_PANEL = "85354-9"
SYSTOLIC = "8480-6"
VITAL_SIGNS = frozenset({"8310-5", "8867-4", "9279-1", "59408-5", SYSTOLIC, "8462-4", "29463-7", "8302-2"})
_NAMESPACE = uuid.UUID("6f1f9b2e-3a53-4c8e-9d8e-5f0c1b6a7e21")


def resource_id(*parts: str) -> str:
    """A stable UUID for the same parts: a re-export gives the same ids, as a record system does."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def patient_resource(record: Mapping[str, Any]) -> dict[str, Any]:
    patient = record["patient"]
    pid = resource_id(record.get("source", ""), "patient", patient["mrn"])
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
        "identifier": [
            {"system": "https://github.com/synthetichealth/synthea", "value": pid},
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "code": "MR",
                            "display": "Medical Record Number",
                        }
                    ],
                    "text": "Medical Record Number",
                },
                "system": "http://hospital.smarthealthit.org",
                "value": patient["mrn"],
            },
        ],
    }
    if patient.get("ssn"):
        resource["identifier"].append(
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
                "system": "http://hl7.org/fhir/sid/us-ssn",
                "value": patient["ssn"],
            }
        )
    if patient.get("name"):
        *given, family = patient["name"].split()
        resource["name"] = [{"use": "official", "family": family, "given": given or [family]}]
    telecom = []
    if patient.get("phone"):
        telecom.append({"system": "phone", "value": patient["phone"], "use": "home"})
    if patient.get("email"):
        telecom.append({"system": "email", "value": patient["email"]})
    if telecom:
        resource["telecom"] = telecom
    if patient.get("sex"):
        resource["gender"] = patient["sex"]
    if patient.get("birth_date"):
        resource["birthDate"] = patient["birth_date"]
    if patient.get("address") or patient.get("zip"):
        address: dict[str, Any] = {"use": "home", "country": "US"}
        if patient.get("address"):
            address["line"] = [patient["address"]]
        if patient.get("zip"):
            address["postalCode"] = patient["zip"]
        resource["address"] = [address]
    return resource


def _reference(resource_type: str, rid: str, *, bundle: bool) -> dict[str, str]:
    return {"reference": f"urn:uuid:{rid}" if bundle else f"{resource_type}/{rid}"}


def encounter_resources(
    record: Mapping[str, Any], definition: Definition, *, patient_id: str, bundle: bool = True
) -> list[dict[str, Any]]:
    """The Encounter of a record, then its Observations and its Condition."""
    eid = resource_id(record.get("source", ""), "encounter", record["external_id"])
    start = f"{record['encounter_date']}T09:30:00-05:00"
    subject = _reference("Patient", patient_id, bundle=bundle)
    context = _reference("Encounter", eid, bundle=bundle)
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
            "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "50849002"}]}],
            "subject": subject,
            "period": {"start": start, "end": f"{record['encounter_date']}T11:00:00-05:00"},
        }
    ]
    for key, value in (record.get("findings") or {}).items():
        finding = definition.finding(key)
        if finding is None or not finding.loinc:
            continue
        quantity = {"value": value, "unit": finding.unit or "1", "system": UCUM, "code": finding.unit or "1"}
        category = "vital-signs" if finding.loinc in VITAL_SIGNS else "laboratory"
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": resource_id(eid, "observation", key),
            "status": "final",
            "category": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}
            ],
            "subject": subject,
            "encounter": context,
            "effectiveDateTime": start,
            "issued": f"{record['encounter_date']}T09:45:00.000-05:00",
        }
        code = {"coding": [{"system": LOINC, "code": finding.loinc, "display": finding.display_name}]}
        if finding.loinc == SYSTOLIC:
            observation["code"] = {"coding": [{"system": LOINC, "code": BP_PANEL, "display": "Blood pressure panel"}]}
            observation["component"] = [{"code": code, "valueQuantity": quantity}]
        else:
            observation["code"] = code
            observation["valueQuantity"] = quantity
        out.append(observation)
    for key in record.get("symptoms") or ():
        symptom = next((item for item in definition.symptoms if item.key == key), None)
        if symptom is None or not symptom.snomed_ct:
            continue
        out.append(
            {
                "resourceType": "Condition",
                "id": resource_id(eid, "symptom", key),
                "clinicalStatus": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
                },
                "code": {
                    "coding": [{"system": "http://snomed.info/sct", "code": symptom.snomed_ct}],
                    "text": symptom.display_name,
                },
                "subject": subject,
                "encounter": context,
                "onsetDateTime": start,
            }
        )
    diagnosis = record.get("diagnosis") or {}
    if diagnosis.get("code"):
        out.append(
            {
                "resourceType": "Condition",
                "id": resource_id(eid, "condition"),
                "clinicalStatus": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
                },
                "verificationStatus": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
                    ]
                },
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                "code": "encounter-diagnosis",
                            }
                        ]
                    }
                ],
                "code": {
                    "coding": [
                        {
                            "system": ICD10_CM,
                            "code": diagnosis["code"],
                            **({"display": diagnosis["label"]} if diagnosis.get("label") else {}),
                        },
                        {"system": "http://snomed.info/sct", "code": "233604007"},
                    ]
                },
                "subject": subject,
                "encounter": context,
                "onsetDateTime": start,
            }
        )
    return out


def claim_resource(encounter: Mapping[str, Any], patient_id: str) -> dict[str, Any]:
    """A resource the engine does not use (Synthea writes a Claim per encounter): to be skipped."""
    return {
        "resourceType": "Claim",
        "id": resource_id(encounter["id"], "claim"),
        "status": "active",
        "patient": {"reference": f"urn:uuid:{patient_id}"},
    }


def resources_of(
    records: Iterable[Mapping[str, Any]], definition: Definition, *, bundle: bool = True
) -> Iterator[dict[str, Any]]:
    """Patients (each once, before their first encounter), Encounters, Observations, Conditions and a
    Claim per encounter, in the order Synthea writes them."""
    seen: set[str] = set()
    for record in records:
        patient = patient_resource(record)
        if patient["id"] not in seen:
            seen.add(patient["id"])
            yield patient
        found = encounter_resources(record, definition, patient_id=patient["id"], bundle=bundle)
        yield from found
        yield claim_resource(found[0], patient["id"])


def bundle(resources: Iterable[Mapping[str, Any]], *, kind: str = "transaction") -> dict[str, Any]:
    """A Bundle of ``resources`` (``transaction`` with POST requests, as Synthea writes, or ``collection``)."""
    entries = []
    for resource in resources:
        entry: dict[str, Any] = {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
        if kind == "transaction":
            entry["request"] = {"method": "POST", "url": resource["resourceType"]}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def ndjson(resources: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Bulk-export files: one NDJSON text per resource type (``Patient.ndjson``, ...)."""
    files: dict[str, list[str]] = {}
    for resource in resources:
        files.setdefault(f"{resource['resourceType']}.ndjson", []).append(json.dumps(resource))
    return {name: "\n".join(lines) + "\n" for name, lines in files.items()}
