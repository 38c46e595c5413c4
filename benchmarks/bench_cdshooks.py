"""A CDS Hooks call against the plain predict of the same patient (issue 17: at most 1.5x).

The model is trained, registered and activated as in ``bench_predict`` (the respiratory cohort's
dictionary, its training ranges). A record system is registered as a trusted client with an inline
ES384 JWK Set. Then, interleaved in one process:

- plain, FHIR: ``predict/`` with a FHIR Parameters body of the same Patient and Observations
  (a real access JWT; read by the same ``compact_record``, validated by fhir.resources; the
  prediction logged): the plain predict of the same input, which the goal row compares with;
- plain, JSON: ``predict/`` with the compact record those resources give (findings, age, sex),
  informational: what reading FHIR costs on top;
- CDS Hooks: ``POST /cds-services/patient-view-{slug}`` with the patient's Patient and, per model
  input, a searchset Bundle of its latest Observation (``cases.fhir.synthetic``, as Synthea writes
  them), authenticated by a fresh ES384 token per call: signature check, issuer, audience, expiry,
  the jti's INSERT; then the prefetch checked (keys, patient) and read as the Parameters body is,
  the same serving path, and the card.

The tokens are signed before the timers start: signing is the record system's work. The ratio is
of medians; the goal is the issue's.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from typing import Any

from benchmarks.bench_predict import _rows_and_records, active_version, serving_settings
from benchmarks.harness import Result, scaled, timer

SLUG = "bench-cdshooks"
CALLS = 300
GOAL = 1.5
BASE = "https://cds.bench.example.org"
ISSUER = "https://ehr.bench.example.org/"


def _record_system(user: Any) -> Any:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from cds_hooks.models import TrustedClient

    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "bench", "use": "sig", "alg": "ES384"})
    TrustedClient.objects.create(name="Bench EHR", issuer=ISSUER, audience=BASE, jwks={"keys": [jwk]}, user=user)
    return key


def _token(key: Any, path: str) -> str:
    import jwt

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": BASE + path, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "bench", "typ": "JWT"})


def _bodies(records: list[dict[str, Any]]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(plain JSON predict bodies, FHIR Parameters predict bodies, CDS Hooks call bodies) of the same
    patients."""
    from django.utils import timezone

    from cases.dictionary.checking import current_dictionary
    from cases.fhir import synthetic
    from cases.interchange import parse_date
    from cases.quality import age_at
    from models_registry.serving.inputs import ALLOW_MISSING

    dictionary = current_dictionary("respiratory")
    assert dictionary is not None
    definition = dictionary.parsed
    inputs = [finding for finding in definition.findings if finding.used_by_model and finding.loinc]
    plain, parameters, hooks = [], [], []
    for record in records:
        born = parse_date(record["patient"]["birth_date"], "birth_date")
        assert born is not None
        plain.append(
            json.dumps(
                {
                    "findings": record["findings"],
                    "age": age_at(born, timezone.localdate()),
                    "sex": record["patient"]["sex"],
                    ALLOW_MISSING: True,
                }
            ).encode()
        )
        patient = synthetic.patient_resource(record)
        found = synthetic.encounter_resources(record, definition, patient_id=patient["id"], bundle=False)
        observations = [item for item in found if item["resourceType"] == "Observation"]
        prefetch: dict[str, Any] = {"patient": patient}
        for finding in inputs:
            matching = [
                item
                for item in observations
                if finding.loinc
                in {c["code"] for c in item["code"]["coding"]}
                | {c["code"] for part in item.get("component", []) for c in part["code"]["coding"]}
            ]
            prefetch[f"obs-{finding.key}"] = (
                {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": item} for item in matching]}
                if matching
                else None
            )
        parameter = [{"name": "patient", "resource": patient}, {"name": "allow_missing", "valueBoolean": True}]
        parameter += [{"name": "observation", "resource": item} for item in observations]
        parameters.append(json.dumps({"resourceType": "Parameters", "parameter": parameter}).encode())
        hooks.append(
            json.dumps(
                {
                    "hook": "patient-view",
                    "hookInstance": str(uuid.uuid4()),
                    "context": {"userId": "Practitioner/bench", "patientId": patient["id"]},
                    "prefetch": prefetch,
                }
            ).encode()
        )
    return plain, parameters, hooks


def _measure(client_user: Any) -> list[Result]:
    from rest_framework.test import APIClient

    from benchmarks.bench_predict import prediction_client

    key = _record_system(client_user)
    plain_client, hooks_client = prediction_client(client_user), APIClient()
    plain_url, hooks_url = f"/api/v1/model-types/{SLUG}/predict/", f"/cds-services/patient-view-{SLUG}"
    _, records = _rows_and_records(50, seed=21)
    plain_bodies, parameter_bodies, hook_bodies = _bodies(records)
    calls = scaled(CALLS)
    tokens = [_token(key, hooks_url) for _ in range(calls + 20)]

    def post(client: Any, url: str, body: bytes, content_type: str = "application/json", **headers: str) -> None:
        response = client.post(url, body, content_type=content_type, secure=True, **headers)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.content[:300]!r}")

    for i in range(20):  # warm-up: routing table, model, fhir.resources' classes, code paths
        post(plain_client, plain_url, plain_bodies[i])
        post(plain_client, plain_url, parameter_bodies[i], "application/fhir+json")
        post(hooks_client, hooks_url, hook_bodies[i], HTTP_AUTHORIZATION=f"Bearer {tokens[calls + i]}")
    samples: dict[str, list[float]] = {"plain": [], "parameters": [], "hooks": []}
    for i in range(calls):  # interleaved: both see the same machine
        with timer() as elapsed:
            post(plain_client, plain_url, plain_bodies[i % 50])
        samples["plain"].append(elapsed.wall)
        with timer() as elapsed:
            post(plain_client, plain_url, parameter_bodies[i % 50], "application/fhir+json")
        samples["parameters"].append(elapsed.wall)
        with timer() as elapsed:
            post(hooks_client, hooks_url, hook_bodies[i % 50], HTTP_AUTHORIZATION=f"Bearer {tokens[i]}")
        samples["hooks"].append(elapsed.wall)
    plain_ms, parameters_ms, hooks_ms = (
        statistics.median(samples[kind]) * 1000 for kind in ("plain", "parameters", "hooks")
    )
    return [
        Result(
            "CDS Hooks patient-view call vs plain predict of the same FHIR resources (median)",
            hooks_ms,
            "ms",
            baseline=parameters_ms,
            max_ratio=GOAL,
            note=f"{calls} calls each, interleaved; both read a Patient and 8 Observations (fhir.resources, "
            "units converted); CDS Hooks adds the ES384 token (signature, issuer, audience, its jti stored), the "
            "prefetch rules and the card",
        ),
        Result(
            "CDS Hooks patient-view call vs plain predict of the JSON record those resources give (median)",
            hooks_ms,
            "ms",
            baseline=plain_ms,
            note=f"informational: reading FHIR itself; the Parameters body alone is {parameters_ms / plain_ms:.2f}x "
            "the JSON record",
        ),
    ]


def run() -> list[Result]:
    with serving_settings():
        client_user, _version = active_version(
            "bench-cdshooks", slug=SLUG, name="CDS Hooks benchmark", rows=scaled(2000), seed=13
        )
        return _measure(client_user)
