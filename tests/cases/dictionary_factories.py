"""A small dictionary definition for tests, and cohorts with a published version of it."""

from __future__ import annotations

import copy
from typing import Any

from cases.models import Cohort, DataDictionary

SMALL_DEFINITION: dict[str, Any] = {
    "findings": [
        {
            "key": "heart_rate",
            "display_name": "Heart rate",
            "unit": "/min",
            "loinc": "8867-4",
            "value_type": "integer",
            "hard_limits": {"min": 0, "max": 350},
            "expected_range": {"min": 40, "max": 180},
            "used_by_model": True,
        },
        {
            "key": "temperature_c",
            "display_name": "Body temperature",
            "unit": "Cel",
            "loinc": "8310-5",
            "value_type": "number",
            "hard_limits": {"min": 25, "max": 46},
            "expected_range": {"min": 35, "max": 41.5},
        },
        {"key": "smoker", "display_name": "Current smoker", "value_type": "boolean", "used_by_model": False},
        {
            "key": "gcs_band",
            "display_name": "Consciousness band",
            "value_type": "category",
            "values": [{"code": 0, "display_name": "alert"}, {"code": 1, "display_name": "not alert"}],
        },
    ],
    "symptoms": [
        {"key": "cough", "display_name": "Cough", "snomed_ct": "49727002"},
        {"key": "fever", "display_name": "Fever", "snomed_ct": "386661006"},
    ],
    "diagnoses": [
        {"code": "J18.9", "display_name": "Pneumonia, unspecified organism"},
        {"code": "J06.9", "display_name": "Acute upper respiratory infection, unspecified"},
    ],
    "demographics": {"age": True, "sex": False},
}


def small_definition(**overrides: Any) -> dict[str, Any]:
    definition = copy.deepcopy(SMALL_DEFINITION)
    definition.update(overrides)
    return definition


def published_dictionary(slug: str = "small", *, by: Any = None, definition: Any = None) -> DataDictionary:
    cohort, _ = Cohort.objects.get_or_create(slug=slug, defaults={"name": slug.title()})
    draft = DataDictionary.create_draft(cohort, definition or small_definition(), by=by)
    draft.publish(by=by)
    return draft
