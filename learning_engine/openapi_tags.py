"""The tags of the OpenAPI schema: plain data, read by the settings (SPECTACULAR_SETTINGS["TAGS"])
and by ``learning_engine.openapi``, which tags each operation from its path."""

from __future__ import annotations

# The groups of operations, in the order Swagger UI shows them, with what each is for.
TAGS = [
    {"name": "auth", "description": "Log in for a JWT pair, rotate the refresh token, log out."},
    {"name": "cases", "description": "Clinical cases: submit, review (four-eyes), import, statistics."},
    {"name": "cohorts", "description": "Cohorts and their data dictionaries."},
    {"name": "datasets", "description": "Frozen, de-identified, patient-disjoint dataset snapshots."},
    {"name": "training", "description": "Training jobs: create, follow, cancel, retry; external trainers."},
    {"name": "registry", "description": "Model types and their versions: approve, activate, compare, roll back."},
    {"name": "serving", "description": "Predict with the active version; confirm the diagnosis (feedback)."},
    {"name": "A/B tests", "description": "Compare a candidate with the production version on live traffic."},
    {
        "name": "CDS Hooks",
        "description": "CDS Hooks 2.0 for record systems: discovery, service calls, card feedback (a signed "
        "client JWT, not an API token).",
    },
    {"name": "monitoring", "description": "Drift, live accuracy and calibration of the serving versions."},
    {"name": "access log", "description": "Who read which patients' raw data (privacy officers)."},
    {"name": "health", "description": "The API's entry points and the health check (no authentication)."},
]
