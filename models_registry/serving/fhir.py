"""A prediction as a FHIR R4 RiskAssessment (``predict/?format=fhir``, or ``Accept:
application/fhir+json``).

One ``prediction`` per diagnosis of the model, most likely first: the outcome coded in ICD-10-CM
with the data dictionary's display name, ``probabilityDecimal`` the model's probability. ``method``
names the model type and version that answered, ``identifier`` the prediction (the id feedback
takes), ``subject`` the patient the client named in ``subject_key``: a FHIR reference
(``Patient/123``) as it is, any other key as an identifier; a RiskAssessment has to name its
subject, so a record without one is refused (400 ``subject_required``). Out-of-range warnings and
imputed findings are ``note`` entries. The resource is validated with fhir.resources (its R4B
models, which R4 resources of this type validate against, ``cases.fhir.resources``) before it is
answered.
"""

from __future__ import annotations

import re
from typing import Any

from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from learning_engine.exceptions import InvalidRequest
from learning_engine.parsers import SafeJSONParser

FHIR_JSON = "application/fhir+json"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
PREDICTION_SYSTEM = "urn:clinical-diagnosis-engine:prediction"
MODEL_SYSTEM = "urn:clinical-diagnosis-engine:model-version"
_REFERENCE = re.compile(r"(Patient|Group)/[A-Za-z0-9\-.]{1,64}")


class FHIRJSONRenderer(JSONRenderer):
    """``application/fhir+json``, chosen by ``?format=fhir`` or the Accept header."""

    media_type = FHIR_JSON
    format = "fhir"


class FHIRJSONParser(SafeJSONParser):
    """``application/fhir+json`` bodies (a FHIR ``Parameters`` resource), read as JSON is."""

    media_type = FHIR_JSON


def subject_reference(subject_key: Any) -> dict[str, Any]:
    """The RiskAssessment's subject from the record's ``subject_key``; 400 without one."""
    if not isinstance(subject_key, str) or not subject_key.strip():
        raise InvalidRequest(
            'subject_key: a RiskAssessment names its subject; send "subject_key": "Patient/<id>" '
            "(or your own patient or encounter key).",
            code="subject_required",
            field="subject_key",
        )
    if _REFERENCE.fullmatch(subject_key):
        return {"reference": subject_key}
    return {"type": "Patient", "identifier": {"value": subject_key}}


def _probability(value: float) -> float:
    return round(min(1.0, max(0.0, float(value))), 6)


def risk_assessment(answer: dict[str, Any], *, subject: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The RiskAssessment of one served answer (``serve``'s), validated; ``names``: diagnosis
    display names by code (the answering version's dictionary)."""
    from fhir.resources.R4B.riskassessment import RiskAssessment

    ranked = sorted(answer["probabilities"].items(), key=lambda item: -item[1])
    notes = [warning["message"] for warning in answer.get("warnings") or []]
    if answer.get("imputed"):
        notes.append(
            f"Imputed from the training data (missing): {', '.join(answer['imputed'])}; "
            f"completeness {answer.get('completeness', 1.0):.0%}."
        )
    version = f"{answer['model_type']} {answer['model_version']}"
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": f"prediction-{answer['id']}",
        "identifier": [{"system": PREDICTION_SYSTEM, "value": str(answer["id"])}],
        "status": "final",
        "method": {
            "coding": [{"system": MODEL_SYSTEM, "code": f"{answer['model_type']}/{answer['model_version']}"}],
            "text": version + (f" (A/B arm {answer['arm']})" if answer.get("arm") else ""),
        },
        "subject": subject,
        "occurrenceDateTime": timezone.now().isoformat(timespec="seconds"),
        "prediction": [
            {
                "outcome": {
                    "coding": [
                        {"system": ICD10_CM, "code": code, **({"display": names[code]} if names.get(code) else {})}
                    ],
                    "text": names.get(code) or code,
                },
                "probabilityDecimal": _probability(probability),
            }
            for code, probability in ranked
        ],
    }
    if notes:
        resource["note"] = [{"text": text} for text in notes]
    RiskAssessment.model_validate(resource)  # ours: a failure here is a bug, not a client error
    return resource
