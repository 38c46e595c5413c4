"""``POST /api/v1/fhir/`` through HTTP with real JWT clients."""

from __future__ import annotations

import json

import pytest

from cases.access_log import AccessLogEntry
from cases.fhir import synthetic
from cases.models import Case
from learning_engine import roles
from tests.cases import fhir_exports
from tests.conftest import jwt_client

pytestmark = pytest.mark.django_db
URL = "/api/v1/fhir/"


@pytest.fixture
def client(clinician):
    return jwt_client(clinician)


def bundle_body(items, *, kind="transaction") -> bytes:
    return json.dumps(synthetic.bundle(fhir_exports.synthea_resources(items), kind=kind)).encode()


def post(client, body, content_type="application/fhir+json", query=""):
    return client.generic("POST", f"{URL}{query}", body, content_type=content_type)


def test_a_clinician_imports_a_bundle_and_gets_the_report(client, clinician):
    items = fhir_exports.records(patients=2, encounters_per_patient=2)
    response = post(client, bundle_body(items), query="?source=synthea")
    assert response.status_code == 200, response.content
    report = response.json()
    assert (report["encounters"], report["created"], report["errors"]) == (4, 4, 0)
    assert report["skipped"]["Claim"] == 4
    assert report["by_type"]["Observation"] > 0
    assert Case.objects.filter(source="synthea", submitted_by=clinician).count() == 4
    entry = AccessLogEntry.objects.get()
    assert entry.channel == AccessLogEntry.Channel.API
    assert entry.action == AccessLogEntry.Action.IMPORT
    assert sorted(entry.case_ids()) == sorted(Case.objects.values_list("pk", flat=True))
    again = post(client, bundle_body(items), query="?source=synthea").json()
    assert (again["created"], again["unchanged"]) == (0, 4)


@pytest.mark.parametrize("content_type", ["application/fhir+ndjson", "application/x-ndjson"])
def test_ndjson_bodies_are_read_line_by_line(client, content_type):
    items = fhir_exports.records(patients=1, encounters_per_patient=2)
    lines = [json.dumps(item) for item in fhir_exports.synthea_resources(items, bundle=False)]
    lines.insert(3, '{"resourceType": "Observation", "status": ')  # a broken line
    response = post(client, "\n".join(lines).encode(), content_type)
    assert response.status_code == 200
    report = response.json()
    assert report["created"] == 2
    assert [(p["line"], p["code"]) for p in report["problems"] if p["level"] == "error"] == [(4, "invalid_json")]


@pytest.mark.parametrize("role", ["anonymous", *[role for role in roles.ROLES if role != roles.CLINICIAN]])
def test_every_role_but_clinicians_is_refused(api_client_for, role):
    items = fhir_exports.records(patients=1, encounters_per_patient=1)
    response = post(api_client_for(role), bundle_body(items))
    assert response.status_code == (401 if role == "anonymous" else 403)
    assert response.json()["code"] in ("not_authenticated", "permission_denied")
    assert Case.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "query", "code"),
    [
        (b"", "", "empty_body"),
        (b'{"resourceType": "Patient"}', "", "not_a_bundle"),
        (b'{"resourceType": "Bundle", "type": "history", "entry": []}', "", "bundle_type_not_taken"),
        (b"[1, 2", "", "parse_error"),
        (b"[1, 2]", "", "not_a_bundle"),
        (b'{"resourceType": "Bundle", "type": "collection", "entry": []}', "?cohort=nope", "unknown_cohort"),
        (b'{"resourceType": "Bundle", "type": "collection", "entry": []}', "?source=a%20b", "invalid"),
        (b'{"resourceType": "Bundle", "type": "collection", "entry": []}', "?cohort=%3Cscript%3E", "invalid"),
    ],
)
def test_a_body_or_query_that_cannot_be_taken_is_a_400_with_a_code(client, body, query, code):
    response = post(client, body, query=query)
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_an_import_where_every_encounter_fails_is_a_400_with_the_report(client):
    items = fhir_exports.records(patients=1, encounters_per_patient=2)
    resources = fhir_exports.synthea_resources(items)
    resources = [item for item in resources if item["resourceType"] != "Patient"]  # no Patient: nothing maps
    response = post(client, json.dumps(synthetic.bundle(resources)).encode())
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_records"
    assert {p["code"] for p in response.json()["report"]["problems"]} == {"no_patient"}


def test_more_encounters_than_the_limit_are_refused_before_anything_is_written(client, settings):
    settings.MAX_IMPORT_RECORDS = 3
    response = post(client, bundle_body(fhir_exports.records(patients=2, encounters_per_patient=2)))
    assert response.status_code == 400
    assert response.json()["code"] == "too_many_records"
    assert Case.objects.count() == 0


def test_a_body_over_the_import_limit_is_a_413(client, settings):
    settings.MAX_IMPORT_BODY_BYTES = 1000
    response = post(client, bundle_body(fhir_exports.records(patients=1, encounters_per_patient=1)))
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_another_media_type_is_a_415(client):
    response = post(client, b"resourceType=Bundle", content_type="text/csv")
    assert response.status_code == 415


@pytest.mark.parametrize(
    "hostile",
    [
        b"[" * 200_000,
        b'{"resourceType": "Observation", "valueQuantity": {"value": ' + b"7" * 20_000 + b"}}",
        b'{"resourceType": "Observation", "valueQuantity": {"value": "37.2"}, "status": {"a": [true, null, 1e999]}}',
        b'{"resourceType": "Patient", "birthDate": 19510304, "gender": ["female"], "name": "Quilla"}',
    ],
)
def test_worst_value_inputs_are_reported_never_a_500(client, hostile):
    items = fhir_exports.records(patients=1, encounters_per_patient=1)
    good = bundle_body(items, kind="collection")
    body = good[: good.rindex(b"]")] + b', {"resource": ' + hostile + b"}]}"
    response = post(client, body, query="?cohort=respiratory")
    assert response.status_code == 200, response.content
    report = response.json()
    assert report["created"] == 1
    assert report["errors"] == 1
    assert "Quilla" not in response.content.decode()
