"""Function-level authorisation over every API endpoint and role, and no raw PHI to anyone but
clinicians and superusers, in any answer: success, error, HTML or export.

The endpoints are enumerated from the URL resolver (drf-spectacular's endpoint enumerator, which
walks ``learning_engine.urls``), so a new endpoint fails ``test_every_endpoint_is_in_the_matrix``
until its row below says who may call it. ``tests/cases/test_permissions_matrix.py`` goes deeper
on the case endpoints (refused requests change nothing, the de-identified view); this file is the
breadth: every endpoint, every role, one world with an object in each state (``tests.fuzz.world``).

"Allowed" means the permission check let the request through: any answer but 401 and 403 (the
request may still be invalid, 404 for an object the caller may not see, or 409). "Refused" means
401 for an anonymous caller and 403 for an authenticated one, each with its JSON code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from drf_spectacular.generators import EndpointEnumerator
from rest_framework.test import APIClient

from cases.models import Case
from learning_engine import roles
from tests.conftest import jwt_client
from tests.fuzz.world import World, build_world
from tests.models_registry.serving.factories import reset_serving_state

C, E, L, P = roles.CLINICIAN, roles.ML_ENGINEER, roles.CLINICAL_LEAD, roles.PREDICTION_CLIENT
PO = roles.PRIVACY_OFFICER
ANYONE = frozenset({"anonymous", C, E, L, P, PO})
STAFF_VIEWERS = frozenset({E, L})

# (method, path) -> the roles whose requests pass the permission check. The design's table
# (docs/design.md, "Roles"), written out: keep it a specification, not a copy of the code.
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/api/v1/auth/token/"): ANYONE,
    ("POST", "/api/v1/auth/token/refresh/"): ANYONE,
    ("POST", "/api/v1/auth/token/blacklist/"): ANYONE,
    ("GET", "/api/v1/"): ANYONE,
    ("GET", "/api/v1/health/"): ANYONE,
    ("GET", "/api/schema/"): ANYONE,
    ("GET", "/api/docs/"): ANYONE,
    # Cases: clinicians do everything; ML staff read de-identified cases and statistics.
    ("GET", "/api/v1/cases/"): frozenset({C, E, L}),
    ("POST", "/api/v1/cases/"): frozenset({C}),
    ("GET", "/api/v1/cases/{pk}/"): frozenset({C, E, L}),
    ("PUT", "/api/v1/cases/{pk}/"): frozenset({C}),
    ("PATCH", "/api/v1/cases/{pk}/"): frozenset({C}),
    ("POST", "/api/v1/cases/{pk}/approve/"): frozenset({C}),
    ("POST", "/api/v1/cases/{pk}/reject/"): frozenset({C}),
    ("POST", "/api/v1/cases/{pk}/retract/"): frozenset({C}),
    ("POST", "/api/v1/cases/import/"): frozenset({C}),
    ("POST", "/api/v1/fhir/"): frozenset({C}),
    ("GET", "/api/v1/cases/statistics/"): frozenset({C, E, L}),
    # Cohorts and their dictionaries: every role that sends or reads cases (REST clients validate first).
    ("GET", "/api/v1/cohorts/"): frozenset({C, E, L, P}),
    ("GET", "/api/v1/cohorts/{slug}/"): frozenset({C, E, L, P}),
    ("GET", "/api/v1/cohorts/{slug}/schema/"): frozenset({C, E, L, P}),
    # The PHI access log: the privacy officer, and only them (their only endpoints).
    ("GET", "/api/v1/access-log/"): frozenset({PO}),
    ("GET", "/api/v1/access-log/{pk}/"): frozenset({PO}),
    # Datasets: engineers prepare and download them; leads look.
    ("GET", "/api/v1/datasets/"): STAFF_VIEWERS,
    ("POST", "/api/v1/datasets/"): frozenset({E}),
    ("GET", "/api/v1/datasets/{pk}/"): STAFF_VIEWERS,
    ("GET", "/api/v1/datasets/{pk}/download/"): frozenset({E}),
    # Training: engineers create, cancel, retry and report; leads look.
    ("GET", "/api/v1/training/jobs/"): STAFF_VIEWERS,
    ("POST", "/api/v1/training/jobs/"): frozenset({E}),
    ("GET", "/api/v1/training/jobs/{pk}/"): STAFF_VIEWERS,
    ("POST", "/api/v1/training/jobs/{pk}/cancel/"): frozenset({E}),
    ("POST", "/api/v1/training/jobs/{pk}/retry/"): frozenset({E}),
    ("POST", "/api/v1/training/jobs/{pk}/start/"): frozenset({E}),
    ("PATCH", "/api/v1/training/jobs/{pk}/progress/"): frozenset({E}),
    ("POST", "/api/v1/training/jobs/{pk}/complete/"): frozenset({E}),
    ("POST", "/api/v1/training/jobs/{pk}/fail/"): frozenset({E}),
    # Registry: leads approve and deploy; engineers report performance and upload artifacts.
    ("GET", "/api/v1/model-types/"): STAFF_VIEWERS,
    ("GET", "/api/v1/model-types/{slug}/"): STAFF_VIEWERS,
    ("GET", "/api/v1/model-types/{slug}/versions/"): STAFF_VIEWERS,
    ("GET", "/api/v1/model-types/{slug}/versions/{version}/"): STAFF_VIEWERS,
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/approve/"): frozenset({L}),
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/reject/"): frozenset({L}),
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/activate/"): frozenset({L}),
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/deactivate/"): frozenset({L}),
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/archive/"): frozenset({L}),
    ("GET", "/api/v1/model-types/{slug}/versions/{version}/performance/"): STAFF_VIEWERS,
    ("POST", "/api/v1/model-types/{slug}/versions/{version}/performance/"): frozenset({E}),
    ("POST", "/api/v1/model-types/{slug}/versions/upload/"): frozenset({E}),
    ("POST", "/api/v1/model-types/{slug}/rollback/"): frozenset({L}),
    ("GET", "/api/v1/model-types/{slug}/history/"): STAFF_VIEWERS,
    ("GET", "/api/v1/model-types/{slug}/compare/"): STAFF_VIEWERS,
    # Monitoring of the serving versions: engineers and leads read it.
    ("GET", "/api/v1/model-types/{slug}/monitoring/"): STAFF_VIEWERS,
    # A/B tests: engineers set up and stop, leads conclude and stop; both read.
    ("GET", "/api/v1/model-types/{slug}/ab-tests/"): STAFF_VIEWERS,
    ("POST", "/api/v1/model-types/{slug}/ab-tests/"): frozenset({E}),
    ("GET", "/api/v1/model-types/{slug}/ab-tests/{pk}/"): STAFF_VIEWERS,
    ("POST", "/api/v1/model-types/{slug}/ab-tests/{pk}/stop/"): STAFF_VIEWERS,
    ("POST", "/api/v1/model-types/{slug}/ab-tests/{pk}/conclude/"): frozenset({L}),
    # The learning loop, read-only: the ML engineers and clinical leads who see the registry.
    ("GET", "/api/v1/model-types/{slug}/learning-cycles/"): STAFF_VIEWERS,
    ("GET", "/api/v1/model-types/{slug}/learning-cycles/{pk}/"): STAFF_VIEWERS,
    # Serving: clinicians and hospital systems.
    ("POST", "/api/v1/model-types/{slug}/predict/"): frozenset({C, P}),
    ("POST", "/api/v1/model-types/{slug}/predict/batch/"): frozenset({C, P}),
    ("POST", "/api/v1/predictions/{pk}/feedback/"): frozenset({C, P}),
    # CDS Hooks: a record system's own signed JWT (a trusted client configured in the admin) and
    # nothing else; no user's token or session, not even a superuser's (CDS_HOOKS below).
    ("GET", "/cds-services"): frozenset(),
    ("POST", "/cds-services/{service_id}"): frozenset(),
    ("POST", "/cds-services/{service_id}/feedback"): frozenset(),
}
# Endpoints that authenticate a trusted CDS Hooks client's JWT, not users: every role is 401 there.
CDS_HOOKS = frozenset(key for key in MATRIX if key[1].startswith("/cds-services"))
# The codes of a user's API token shown to a CDS Hooks endpoint (HS256: refused before any key is read).
CDS_HOOKS_REFUSALS = {"not_authenticated", "algorithm_not_allowed"}
ROLES = ("anonymous", *roles.ROLES, "superuser")
PHI_ROLES = frozenset({C, "superuser"})


def endpoints() -> list[tuple[str, str]]:
    """(method, path) of every routed API endpoint, from the URL resolver."""
    found = {(method, path) for path, _regex, method, _view in EndpointEnumerator().get_api_endpoints()}
    return sorted(found, key=lambda item: (item[1], item[0]))


def test_every_endpoint_is_in_the_matrix():
    routed = set(endpoints())

    assert routed - set(MATRIX) == set(), "new endpoints: say who may call them in MATRIX"
    assert set(MATRIX) - routed == set(), "MATRIX names endpoints that no longer exist"


# --- The sweep ------------------------------------------------------------------------------------


def fill(path: str, world: World) -> str:
    def value(match: re.Match[str]) -> str:
        known = world.path_values(path, match.group(1))
        return str(known[0]) if known else "1"

    return re.sub(r"{(\w+)}", value, path)


def body_for(method: str, path: str, world: World) -> Any:
    """A body that echoes raw PHI back if anything would: a clinician's raw record."""
    if method == "GET":
        return None
    if path.startswith("/api/v1/cases/"):
        return world.cases[0].to_record().to_json()
    return {}


def sweep(client: APIClient, world: World) -> Iterator[tuple[str, str, Any]]:
    """Every endpoint called once (and GETs once more as HTML): (method, path, response)."""
    for method, path in endpoints():
        url = fill(path, world)
        body = body_for(method, path, world)
        response = getattr(client, method.lower())(url, body, format="json") if body is not None else client.get(url)
        yield method, path, response
        if method == "GET" and not path.startswith("/api/docs/"):
            yield method, path, client.get(url, HTTP_ACCEPT="text/html")


@pytest.fixture
def world(db) -> Iterator[World]:
    reset_serving_state()
    yield build_world()
    reset_serving_state()


def client_for(role: str, world: World) -> APIClient:
    if role == "superuser":
        from tests.factories import UserFactory

        return jwt_client(UserFactory.create(is_superuser=True, is_staff=True))
    return world.client(role)


def phi_values(world: World) -> set[str]:
    """Every raw identifier and raw note of every case on file (including ones the sweep made)."""
    values: set[str] = set()
    for case in Case.objects.all():
        patient = case.patient or {}
        for key in ("mrn", "name", "birth_date", "phone", "email", "address", "ssn", "zip"):
            if patient.get(key):
                values.add(str(patient[key]))
        if case.note:
            values.add(case.note)
    return values


def leaks(content: bytes, secrets: set[str]) -> list[str]:
    text = content.decode("utf-8", errors="replace")
    found = []
    for secret in secrets:
        for variant in {secret, json.dumps(secret)[1:-1]}:
            # Digits-only values (a ZIP) must stand alone, not inside a timestamp or an id.
            pattern = rf"(?<!\d){re.escape(variant)}(?!\d)" if variant.isdigit() else re.escape(variant)
            if re.search(pattern, text):
                found.append(secret)
    return found


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_the_endpoints_the_matrix_allows(world, role):
    client = client_for(role, world)
    wrong = []

    for method, path, response in sweep(client, world):
        cds_hooks = (method, path) in CDS_HOOKS
        allowed = (role == "superuser" and not cds_hooks) or role in MATRIX[(method, path)]
        status = response.status_code
        assert status < 500, f"{role} {method} {path}: {status} {response.content[:300]!r}"
        if allowed and status in (401, 403):
            wrong.append(f"{method} {path}: {status}, expected to be let through")
        elif not allowed:
            expected = 401 if role == "anonymous" or cds_hooks else 403
            codes = CDS_HOOKS_REFUSALS if cds_hooks else {"not_authenticated", "permission_denied", "token_not_valid"}
            if status != expected:
                wrong.append(f"{method} {path}: {status}, expected {expected}")
            elif response.get("Content-Type", "").startswith("application/json"):
                code = response.json().get("code")
                if code not in codes:
                    wrong.append(f"{method} {path}: code {code!r}")

    assert not wrong, f"{role}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("role", [role for role in ROLES if role not in PHI_ROLES])
def test_no_role_but_clinicians_ever_receives_a_raw_patient_field(world, role):
    client = client_for(role, world)

    responses = list(sweep(client, world))
    # Answers that carry data (lists, details, statistics, exports) and errors alike.
    secrets = phi_values(world)
    statuses = {response.status_code for _method, _path, response in responses}

    assert secrets
    assert statuses & {401, 403, 400, 404}
    for method, path, response in responses:
        body = b"".join(response.streaming_content) if response.streaming else response.content
        leaked = leaks(body, secrets)
        assert not leaked, f"{role} {method} {path} ({response.status_code}) leaked {len(leaked)} raw values"


@pytest.mark.parametrize("role", sorted(PHI_ROLES))
def test_the_phi_check_is_not_vacuous_clinicians_do_see_raw_fields(world, role):
    client = client_for(role, world)
    case = world.cases[0]

    response = client.get(f"/api/v1/cases/{case.pk}/")

    assert leaks(response.content, {case.patient["mrn"]}) == [case.patient["mrn"]]


def test_cds_hooks_endpoints_take_a_configured_clients_token_and_no_session(world, make_user):
    """The matrix's CDS Hooks rows, the other way round: a trusted client's signed JWT is let
    through on each; a logged-in session (a superuser's) and an anonymous caller are 401."""
    from django.test import Client

    from tests.cds_hooks.factories import RecordSystem
    from tests.factories import UserFactory

    system = RecordSystem(issuer="https://matrix-ehr.example.org")
    system.register(make_user(roles.PREDICTION_CLIENT))
    session = Client()
    session.force_login(UserFactory.create(is_superuser=True, is_staff=True))
    for method, path in sorted(CDS_HOOKS):
        url = path.replace("{service_id}", "patient-view-nothing")
        body: dict[str, object] | None = {} if method == "POST" else None
        signed = system.api(system.token(url))
        answered = signed.post(url, body, format="json") if body is not None else signed.get(url)
        assert answered.status_code not in (401, 403), (method, path, answered.content[:300])
        for caller in (session, APIClient()):
            refused = caller.post(url, body, content_type="application/json") if body is not None else caller.get(url)
            assert refused.status_code == 401, (method, path, refused.status_code)
