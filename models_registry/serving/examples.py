"""Examples of the serving API's bodies, for the OpenAPI schema (Swagger UI's "Try it out").

Real records of the demo's ``breast-mass`` model type: the first malignant and the first benign
case of the Breast Cancer Wisconsin (Diagnostic) data that ships with scikit-learn
(``cases.demo.breast_mass_records``), with its 30 findings under the keys of
``cases/dictionaries/breast-mass.json``. Age and sex are not inputs of that model.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample

from cases.api_examples import BREAST_MASS_CASE

MALIGNANT_FINDINGS = {
    "mean_radius": 17.99,
    "mean_texture": 10.38,
    "mean_perimeter": 122.8,
    "mean_area": 1001.0,
    "mean_smoothness": 0.1184,
    "mean_compactness": 0.2776,
    "mean_concavity": 0.3001,
    "mean_concave_points": 0.1471,
    "mean_symmetry": 0.2419,
    "mean_fractal_dimension": 0.0787,
    "radius_error": 1.095,
    "texture_error": 0.9053,
    "perimeter_error": 8.589,
    "area_error": 153.4,
    "smoothness_error": 0.0064,
    "compactness_error": 0.049,
    "concavity_error": 0.0537,
    "concave_points_error": 0.0159,
    "symmetry_error": 0.03,
    "fractal_dimension_error": 0.0062,
    "worst_radius": 25.38,
    "worst_texture": 17.33,
    "worst_perimeter": 184.6,
    "worst_area": 2019.0,
    "worst_smoothness": 0.1622,
    "worst_compactness": 0.6656,
    "worst_concavity": 0.7119,
    "worst_concave_points": 0.2654,
    "worst_symmetry": 0.4601,
    "worst_fractal_dimension": 0.1189,
}

BENIGN_FINDINGS = BREAST_MASS_CASE["findings"]  # the first benign case, as the case API's example

MALIGNANT_RECORD: dict[str, Any] = {
    "findings": MALIGNANT_FINDINGS,
    "symptoms": ["breast_mass"],
    "subject_key": "encounter-2026-000123",
}

# A respiratory encounter: the cohort's eight LOINC-coded labs and vital signs in its UCUM units;
# its models use age and sex.
RESPIRATORY_RECORD: dict[str, Any] = {
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
    "age": 69,
    "sex": "female",
    "subject_key": "encounter-2026-000123",
}

PREDICT_EXAMPLES = [
    OpenApiExample(
        "A breast mass (model type breast-mass)",
        description="The 30 FNA nuclear features of a malignant mass (C50.9).",
        value=MALIGNANT_RECORD,
        request_only=True,
    ),
    OpenApiExample(
        "A respiratory encounter (model type respiratory)",
        description="Vital signs and labs of a suspected pneumonia; age and sex are inputs of this cohort's models.",
        value=RESPIRATORY_RECORD,
        request_only=True,
    ),
    OpenApiExample(
        "The answer",
        value={
            "id": 1842,
            "model_type": "breast-mass",
            "model_version": "v1.0.0",
            "arm": None,
            "diagnosis": {
                "code": "C50.9",
                "label": "Malignant neoplasm of breast, unspecified",
                "display_name": "Malignant neoplasm of breast of unspecified site",
            },
            "probabilities": {"C50.9": 0.97, "D24.9": 0.03},
            "dictionary_version": 1,
            "completeness": 1.0,
            "imputed": [],
            "warnings": [],
        },
        response_only=True,
        status_codes=["200"],
    ),
    OpenApiExample(
        "An answer with a warning",
        description="A value the model version never saw in training (outside its train split's min and max) is "
        "answered, with an out_of_range warning; 'basis' says which range it was compared with.",
        value={
            "id": 1843,
            "model_type": "breast-mass",
            "model_version": "v1.0.0",
            "arm": None,
            "diagnosis": {
                "code": "C50.9",
                "label": "Malignant neoplasm of breast, unspecified",
                "display_name": "Malignant neoplasm of breast of unspecified site",
            },
            "probabilities": {"C50.9": 0.99, "D24.9": 0.01},
            "dictionary_version": 1,
            "completeness": 1.0,
            "imputed": [],
            "warnings": [
                {
                    "code": "out_of_range",
                    "field": "findings.worst_area",
                    "basis": "training_range",
                    "message": "Worst area is outside the range this model version was trained on (185.2 to 4254).",
                }
            ],
        },
        response_only=True,
        status_codes=["200"],
    ),
    OpenApiExample(
        "A model input missing",
        description='Without "allow_missing": true, every model input finding of the cohort\'s data dictionary '
        "is needed; with it, at least half of them, and the answer lists the imputed ones.",
        value={
            "code": "missing_findings",
            "detail": "findings: 1 of the model's 30 input findings are missing: worst_area. Send them, or send "
            '"allow_missing": true to have them imputed.',
            "field": "findings",
            "missing": ["worst_area"],
            "completeness": 0.9667,
            "cohort": "breast-mass",
            "dictionary_version": 1,
        },
        response_only=True,
        status_codes=["400"],
    ),
]

PREDICT_BATCH_EXAMPLES = [
    OpenApiExample(
        "Two breast masses (model type breast-mass)",
        value={
            "records": [
                MALIGNANT_RECORD,
                {"findings": BENIGN_FINDINGS, "symptoms": ["breast_mass"], "subject_key": "encounter-2026-000124"},
            ]
        },
        request_only=True,
    ),
]

FEEDBACK_EXAMPLES = [
    OpenApiExample(
        "The confirmed diagnosis",
        description="Histology confirmed the malignancy the model predicted.",
        value={"diagnosis_code": "C50.9"},
        request_only=True,
    ),
    OpenApiExample(
        "Recorded",
        description="The code with its name in the data dictionary the version was trained under.",
        value={
            "id": 31,
            "prediction": 1042,
            "diagnosis_code": "C50.9",
            "diagnosis_display_name": "Malignant neoplasm of breast of unspecified site",
            "correct": True,
            "given_by": "demo-clinician",
            "created_at": "2026-12-07T09:15:02Z",
        },
        response_only=True,
        status_codes=["201"],
    ),
]
