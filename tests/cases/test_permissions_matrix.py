"""Who may call which case endpoint, and proof that users without the PHI permission never see PHI."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from cases.models import Case
from learning_engine import roles
from tests.cases.factories import CaseFactory, record_dict
from tests.conftest import jwt_client

URL = "/api/v1/cases/"

pytestmark = pytest.mark.django_db


@dataclass
class World:
    submitted: Case  # by someone else, so any clinician may review it
    approved: Case


@dataclass(frozen=True)
class Endpoint:
    call: Callable[[APIClient, World], Any]
    allowed_status: int
    allowed_roles: frozenset[str]


VIEWERS = frozenset({roles.CLINICIAN, roles.ML_ENGINEER, roles.CLINICAL_LEAD})
CLINICIANS = frozenset({roles.CLINICIAN})

ENDPOINTS: dict[str, Endpoint] = {
    "list": Endpoint(lambda c, w: c.get(URL), 200, VIEWERS),
    "options": Endpoint(lambda c, w: c.options(URL), 200, VIEWERS),
    "retrieve": Endpoint(lambda c, w: c.get(f"{URL}{w.approved.pk}/"), 200, VIEWERS),
    "statistics": Endpoint(lambda c, w: c.get(f"{URL}statistics/"), 200, VIEWERS),
    "create": Endpoint(lambda c, w: c.post(URL, record_dict(), format="json"), 201, CLINICIANS),
    "update": Endpoint(
        lambda c, w: c.put(f"{URL}{w.submitted.pk}/", {**record_dict(), "external_id": None, "source": None}),
        200,
        CLINICIANS,
    ),
    "partial_update": Endpoint(lambda c, w: c.patch(f"{URL}{w.submitted.pk}/", {"note": "Edited."}), 200, CLINICIANS),
    "approve": Endpoint(lambda c, w: c.post(f"{URL}{w.submitted.pk}/approve/", {}), 200, CLINICIANS),
    "reject": Endpoint(
        lambda c, w: c.post(f"{URL}{w.submitted.pk}/reject/", {"reason": "incomplete"}), 200, CLINICIANS
    ),
    "retract": Endpoint(lambda c, w: c.post(f"{URL}{w.approved.pk}/retract/", {"reason": "Wrong."}), 200, CLINICIANS),
    "import": Endpoint(lambda c, w: c.post(f"{URL}import/", [record_dict()], format="json"), 200, CLINICIANS),
    # No delete for anyone (a wrong case is rejected or retracted): 405 once authenticated.
    "delete": Endpoint(lambda c, w: c.delete(f"{URL}{w.submitted.pk}/"), 405, frozenset(roles.ROLES)),
}
ROLES = ("anonymous", *roles.ROLES)


@pytest.fixture
def world() -> World:
    return World(submitted=CaseFactory.create(), approved=CaseFactory.create(approved=True))


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(api_client_for, world, role, endpoint):
    spec = ENDPOINTS[endpoint]
    cases_before = Case.objects.count()

    response = spec.call(api_client_for(role), world)

    if role in spec.allowed_roles:
        assert response.status_code == spec.allowed_status, response.content
        return
    expected = 401 if role == "anonymous" else 403
    assert response.status_code == expected, response.content
    assert response.json()["code"] == ("not_authenticated" if role == "anonymous" else "permission_denied")
    # A refused request changes nothing.
    assert Case.objects.count() == cases_before
    for case in (world.submitted, world.approved):
        before = (case.status, case.revision)
        case.refresh_from_db()
        assert (case.status, case.revision) == before


def test_every_routed_endpoint_is_in_the_matrix():
    from cases.views import CaseViewSet

    actions = set(CaseViewSet.action_permissions)
    covered = {"import_cases" if name == "import" else name for name in ENDPOINTS}
    assert actions <= covered


def test_a_superuser_may_do_everything(make_user, world):
    client = jwt_client(make_user(None, is_superuser=True))

    assert client.get(URL).json()["count"] == 2
    assert "patient" in client.get(f"{URL}{world.submitted.pk}/").json()
    assert client.post(f"{URL}{world.submitted.pk}/approve/", {}).status_code == 200


# --- No PHI for users without cases.view_phi ------------------------------------------------------


def raw_values(case: Case) -> list[str]:
    """Every raw identifier of a case that must never reach an ML engineer or clinical lead."""
    patient = case.patient
    values = [patient[key] for key in ("mrn", "name", "phone", "email", "address", "ssn", "birth_date")]
    values += [case.note, case.external_id, case.encounter_date.isoformat()]
    return [str(value) for value in values if value]


def json_variants(text: str) -> list[str]:
    # A value can appear escaped inside JSON (quotes, non-ASCII) or HTML (&#x27; ...).
    return [text, json.dumps(text)[1:-1]]


@pytest.fixture
def phi_world(clinician) -> list[Case]:
    cases = [
        CaseFactory.create(),
        CaseFactory.create(rejected=True),
        CaseFactory.create(approved=True),
        CaseFactory.create(retracted=True),
        CaseFactory.create(
            approved=True,
            record=record_dict(
                note="Seen with her daughter; callback 617-555-0199, MRN-778899 on the old chart.",
                extra_field="private remark",
            ),
        ),
    ]
    # An edited case too, so the last editor and review note paths are exercised.
    edited = CaseFactory.create(submitted_by=clinician)
    jwt_client(clinician).patch(f"{URL}{edited.pk}/", {"symptoms": ["cough"]}, format="json")
    cases.append(edited)
    return cases


def requests_of_a_non_phi_user(client: APIClient, cases: list[Case]) -> list[Any]:
    record = cases[0].to_record().to_json()  # a PHI-laden body, to check nothing echoes it back
    responses = [
        client.get(URL),
        client.get(f"{URL}?page_size=500&ordering=-quality_score"),
        client.get(f"{URL}?status=approved&status=submitted&cohort=respiratory"),
        client.get(URL, HTTP_ACCEPT="text/html"),
        client.get(f"{URL}statistics/"),
        client.get(f"{URL}statistics/", HTTP_ACCEPT="text/html"),
        client.options(URL),
        client.get(f"{URL}?min_quality=abc"),
        client.get(f"{URL}?search={record['patient']['mrn']}"),
        client.get(f"{URL}?ordering=external_id"),
        client.get(f"{URL}?encounter_after={record['encounter_date']}"),
        client.get(f"{URL}999999/"),
        client.post(URL, record, format="json"),
        client.post(f"{URL}import/", [record], format="json"),
    ]
    for case in cases:
        responses += [
            client.get(f"{URL}{case.pk}/"),
            client.get(f"{URL}{case.pk}/", HTTP_ACCEPT="text/html"),
            client.options(f"{URL}{case.pk}/"),
            client.put(f"{URL}{case.pk}/", record, format="json"),
            client.patch(f"{URL}{case.pk}/", {"note": "x"}, format="json"),
            client.post(f"{URL}{case.pk}/approve/", {}),
            client.post(f"{URL}{case.pk}/reject/", {"reason": "bogus"}),
            client.post(f"{URL}{case.pk}/retract/", {"reason": "x"}),
        ]
    return responses


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_no_response_to_a_user_without_phi_permission_contains_a_raw_identifier(api_client_for, phi_world, role):
    client = api_client_for(role)
    secrets = {variant for case in phi_world for value in raw_values(case) for variant in json_variants(value)}

    responses = requests_of_a_non_phi_user(client, phi_world)

    statuses = {response.status_code for response in responses}
    assert {200, 400, 403, 404} <= statuses  # the sweep covers answers and errors
    for response in responses:
        text = response.content.decode()
        leaked = [secret for secret in secrets if secret in text]
        assert not leaked, f"{response.request['REQUEST_METHOD']} {response.request['PATH_INFO']} leaked PHI"


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_a_user_without_phi_permission_sees_the_deidentified_record(api_client_for, phi_world, role):
    client = api_client_for(role)

    listed = client.get(URL).json()["results"]
    html = client.get(URL, HTTP_ACCEPT="text/html").content.decode()

    visible = {case.pk for case in phi_world if case.status in {"approved", "retracted"}}
    assert {item["id"] for item in listed} == visible
    assert all(item["deidentified"]["patient_pseudonym"] == item["patient_pseudonym"] for item in listed)
    scrubbed = next(item for item in listed if "[PHONE]" in item["deidentified"]["note"])
    assert "[MRN]" in scrubbed["deidentified"]["note"]
    assert listed[0]["patient_pseudonym"] in html  # the HTML check above is not vacuous


def test_the_browsable_api_shows_a_clinician_the_raw_record_to_edit(clinician):
    # The positive control of the sweep above: the same HTML page does carry PHI for a clinician.
    case = CaseFactory.create()

    html = jwt_client(clinician).get(f"{URL}{case.pk}/", HTTP_ACCEPT="text/html").content.decode()

    assert case.patient["mrn"] in html
    assert "raw-data-put-form" in html or 'id="put-generic-content-form"' in html
