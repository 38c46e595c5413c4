"""The privacy officer reads the PHI access log (API and admin) and nothing else; nobody else reads it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from cases.access_log import AccessLogEntry, record_access
from learning_engine import roles
from tests.cases.factories import CaseFactory
from tests.conftest import jwt_client

pytestmark = pytest.mark.django_db

A = AccessLogEntry.Action
LOG = "/api/v1/access-log/"
ADMIN_LOG = reverse("admin:cases_accesslogentry_changelist")
OTHER_ROLES = (roles.CLINICIAN, roles.ML_ENGINEER, roles.CLINICAL_LEAD, roles.PREDICTION_CLIENT)


@pytest.fixture
def officer(make_user):
    return make_user(roles.PRIVACY_OFFICER, is_staff=True)


@pytest.fixture
def log(clinician, second_clinician) -> dict[str, Any]:
    """Three entries: two readers, three cases."""
    one, two, three = (CaseFactory.create() for _ in range(3))
    first = record_access(action=A.LIST, case_ids=[one.pk, two.pk], actor=clinician)
    second = record_access(action=A.VIEW, case_ids=[three.pk], actor=second_clinician)
    third = record_access(action=A.EDIT, case_ids=[two.pk], actor=second_clinician, fields=["note"])
    return {"cases": (one, two, three), "entries": (first, second, third)}


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content[:500]
    return [row["id"] for row in response.json()["results"]]


# --- The API ---------------------------------------------------------------------------------------


def test_the_privacy_officer_lists_the_log_newest_first_with_case_counts(officer, log):
    first, second, third = log["entries"]

    response = jwt_client(officer).get(LOG)

    assert ids(response) == [third.pk, second.pk, first.pk]
    row = response.json()["results"][0]
    assert row["action"] == "edit"
    assert row["fields"] == ["note"]
    assert row["case_count"] == 1
    assert row["actor_username"] == third.actor.username
    assert "case_ids" not in row


def test_the_detail_gives_the_case_ids(officer, log):
    one, two, _three = log["cases"]
    first = log["entries"][0]

    response = jwt_client(officer).get(f"{LOG}{first.pk}/")

    assert response.status_code == 200
    assert response.json()["case_ids"] == sorted([one.pk, two.pk])


def test_the_log_filters_by_user_case_action_and_time(officer, log, second_clinician):
    first, second, third = log["entries"]
    _one, two, three = log["cases"]
    client = jwt_client(officer)

    assert ids(client.get(LOG, {"user": second_clinician.pk})) == [third.pk, second.pk]
    assert ids(client.get(LOG, {"username": second_clinician.username})) == [third.pk, second.pk]
    assert ids(client.get(LOG, {"case": two.pk})) == [third.pk, first.pk]
    assert ids(client.get(LOG, {"case": three.pk, "user": second_clinician.pk})) == [second.pk]
    assert ids(client.get(LOG, {"action": ["view", "list"]})) == [second.pk, first.pk]
    later = (timezone.now() + dt.timedelta(minutes=1)).isoformat()
    assert ids(client.get(LOG, {"before": later, "after": "2020-01-01T00:00:00Z"})) == [third.pk, second.pk, first.pk]
    assert ids(client.get(LOG, {"after": later})) == []


def test_the_log_is_paginated(officer, log):
    response = jwt_client(officer).get(LOG, {"page_size": 2})

    assert response.json()["count"] == 3
    assert len(response.json()["results"]) == 2
    assert response.json()["next"]


@pytest.mark.parametrize(
    "params",
    [
        {"user": "abc"},
        {"case": "x"},
        {"action": "read"},
        {"after": "yesterday"},
        {"ordering": "address"},
        # Ids no database column holds (a 500 before: OverflowError in the query) and non-whole ids.
        {"user": "9" * 25},
        {"case": "1" + "0" * 400},
        {"case": "1.5"},
        {"user": "1e3"},
    ],
)
def test_a_bad_filter_is_a_400_with_a_code(officer, log, params):
    response = jwt_client(officer).get(LOG, params)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_the_log_cannot_be_written_through_the_api(officer, log):
    client = jwt_client(officer)
    entry = log["entries"][0]

    assert client.post(LOG, {"action": "view"}, format="json").status_code == 405
    assert client.delete(f"{LOG}{entry.pk}/").status_code == 405
    assert client.patch(f"{LOG}{entry.pk}/", {"action": "list"}, format="json").status_code == 405
    assert AccessLogEntry.objects.get(pk=entry.pk).action == A.LIST


@pytest.mark.parametrize("role", OTHER_ROLES)
def test_no_other_role_reads_the_log(make_user, log, role):
    client = jwt_client(make_user(role))
    entry = log["entries"][0]

    for url in (LOG, f"{LOG}{entry.pk}/"):
        response = client.get(url)
        assert response.status_code == 403, (role, url)
        assert response.json()["code"] == "permission_denied"


def test_anonymous_callers_are_refused(log):
    assert jwt_client(None).get(LOG).status_code == 401


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/cases/",
        "/api/v1/cases/statistics/",
        "/api/v1/datasets/",
        "/api/v1/training/jobs/",
        "/api/v1/model-types/",
    ],
)
def test_the_privacy_officer_sees_no_cases_datasets_or_models(officer, url):
    response = jwt_client(officer).get(url)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_the_privacy_officers_reads_are_not_themselves_phi_reads(officer, log):
    before = AccessLogEntry.objects.count()
    jwt_client(officer).get(LOG)
    assert AccessLogEntry.objects.count() == before


# --- The admin -------------------------------------------------------------------------------------


def test_the_admin_log_is_filterable_by_user_case_and_date(client, officer, log, second_clinician):
    first, second, third = log["entries"]
    _one, two, _three = log["cases"]
    client.force_login(officer)

    def listed(params: dict[str, Any]) -> set[int]:
        response = client.get(ADMIN_LOG, params)
        assert response.status_code == 200
        return {entry.pk for entry in response.context["cl"].result_list}

    assert listed({}) == {first.pk, second.pk, third.pk}
    assert listed({"actor__id__exact": second_clinician.pk}) == {second.pk, third.pk}
    assert listed({"case": two.pk}) == {first.pk, third.pk}
    assert listed({"case": "not-a-number"}) == set()
    hour_ago, in_an_hour = (timezone.now() + dt.timedelta(hours=sign) for sign in (-1, 1))
    assert listed({"created_at__gte": hour_ago.isoformat()}) == {first.pk, second.pk, third.pk}
    assert listed({"created_at__gte": in_an_hour.isoformat()}) == set()
    assert listed(
        {"created_at__gte": hour_ago.isoformat(), "actor__id__exact": second_clinician.pk, "case": two.pk}
    ) == {third.pk}
    html = client.get(ADMIN_LOG).content.decode()
    assert 'name="case"' in html  # the case id box


def test_the_admin_entry_page_is_read_only_and_lists_the_case_ids(client, officer, log):
    first = log["entries"][0]
    one, two, _three = log["cases"]
    client.force_login(officer)
    url = reverse("admin:cases_accesslogentry_change", args=[first.pk])

    response = client.get(url)

    assert response.status_code == 200
    html = response.content.decode()
    assert f"{min(one.pk, two.pk)}, {max(one.pk, two.pk)}" in html
    assert first.actor.username in html
    assert "/admin/auth/user/" not in html  # the reader's name, not a link the officer may not follow
    assert client.post(url, {"action": "view"}).status_code == 403
    assert client.get(reverse("admin:cases_accesslogentry_delete", args=[first.pk])).status_code == 403
    assert client.get(reverse("admin:cases_accesslogentry_add")).status_code == 403


@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_other_staff_cannot_open_the_admin_log(client, make_user, log, role):
    client.force_login(make_user(role, is_staff=True))

    assert client.get(ADMIN_LOG).status_code == 403
    entry = log["entries"][0]
    assert client.get(reverse("admin:cases_accesslogentry_change", args=[entry.pk])).status_code == 403


@pytest.mark.parametrize(
    "name",
    [
        "admin:cases_case_changelist",
        "admin:cases_case_statistics",
        "admin:training_datasetsnapshot_changelist",
        "admin:training_trainingjob_changelist",
        "admin:models_registry_modelversion_changelist",
        "admin:auth_user_changelist",
    ],
)
def test_the_privacy_officer_cannot_open_other_admin_pages(client, officer, name):
    client.force_login(officer)

    assert client.get(reverse(name)).status_code == 403


def test_the_privacy_officers_admin_index_shows_only_the_access_log(client, officer):
    client.force_login(officer)

    response = client.get(reverse("admin:index"))

    models = [model["object_name"] for app in response.context["app_list"] for model in app["models"]]
    assert models == ["AccessLogEntry"]
    html = response.content.decode()
    assert ADMIN_LOG in html
    for other in ("/admin/cases/case/", "/admin/training/", "/admin/models_registry/"):
        assert other not in html
