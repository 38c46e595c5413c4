"""Examples of the case API's bodies, for the OpenAPI schema (Swagger UI's "Try it out").

Records of the demo cohorts that pass their shipped data dictionaries
(``cases/dictionaries/*.json``; ``tests/learning_engine/test_openapi_schema.py`` checks them with
the same validation the API runs). The identifiers are invented.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample

RESPIRATORY_CASE: dict[str, Any] = {
    "external_id": "enc-2026-000123",
    "source": "st-marys",
    "cohort": "respiratory",
    "patient": {
        "mrn": "MRN-448812",
        "name": "Jane Q. Doe",
        "birth_date": "1957-03-14",
        "sex": "female",
        "zip": "02139",
        "phone": "+1 617 555 0100",
        "email": "jane@example.org",
        "address": "12 Elm St, Cambridge, MA",
    },
    "encounter_date": "2026-05-02",
    "findings": {
        "temperature_c": 38.9,
        "heart_rate": 112,
        "respiratory_rate": 26,
        "spo2": 91,
        "systolic_bp": 118,
        "wbc": 15.2,
        "crp": 142,
        "nt_probnp": 180,
    },
    "symptoms": ["cough", "fever", "dyspnea", "sputum", "pleuritic_chest_pain"],
    "note": "Three days of productive cough and fever; crackles at the right base.",
    "diagnosis": {"code": "J18.9", "label": "Pneumonia, unspecified organism"},
}

BREAST_MASS_CASE: dict[str, Any] = {
    "external_id": "fna-2026-000042",
    "source": "st-marys",
    "cohort": "breast-mass",
    "patient": {"mrn": "MRN-551207", "name": "Ann Example", "birth_date": "1972-09-30", "sex": "female"},
    "encounter_date": "2026-04-17",
    "findings": {
        "mean_radius": 13.54,
        "mean_texture": 14.36,
        "mean_perimeter": 87.46,
        "mean_area": 566.3,
        "mean_smoothness": 0.0978,
        "mean_compactness": 0.0813,
        "mean_concavity": 0.0666,
        "mean_concave_points": 0.0478,
        "mean_symmetry": 0.1885,
        "mean_fractal_dimension": 0.0577,
        "radius_error": 0.2699,
        "texture_error": 0.7886,
        "perimeter_error": 2.058,
        "area_error": 23.56,
        "smoothness_error": 0.0085,
        "compactness_error": 0.0146,
        "concavity_error": 0.0239,
        "concave_points_error": 0.0132,
        "symmetry_error": 0.0198,
        "fractal_dimension_error": 0.0023,
        "worst_radius": 15.11,
        "worst_texture": 19.26,
        "worst_perimeter": 99.7,
        "worst_area": 711.2,
        "worst_smoothness": 0.144,
        "worst_compactness": 0.1773,
        "worst_concavity": 0.239,
        "worst_concave_points": 0.1288,
        "worst_symmetry": 0.2977,
        "worst_fractal_dimension": 0.0726,
    },
    "symptoms": ["breast_mass"],
    "note": "Fine-needle aspirate of a palpable left breast mass.",
    "diagnosis": {"code": "D24.9", "label": "Benign neoplasm of breast"},
}

CASE_EXAMPLES = [
    OpenApiExample(
        "A respiratory case (pneumonia)",
        description="Its eight LOINC-coded labs and vital signs in the dictionary's UCUM units.",
        value=RESPIRATORY_CASE,
        request_only=True,
    ),
    OpenApiExample(
        "A breast-mass case (benign)",
        description="The 30 FNA nuclear features of a benign mass (D24.9).",
        value=BREAST_MASS_CASE,
        request_only=True,
    ),
]
