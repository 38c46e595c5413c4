"""The case API shows which dictionary version a case was checked against, and a flagged case's
problems (issue 11): for PHI users and, without values, for everyone else."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cases.interchange import parse_record
from cases.models import Case, DataDictionary
from cases.recheck import recheck_cases
from learning_engine import roles
from tests.cases.factories import CaseFactory, record_dict
from tests.conftest import jwt_client

pytestmark = pytest.mark.django_db
URL = "/api/v1/cases/"
SECRET_KEY_TEXT = "zz_doe_private"  # a findings key that must never be echoed


def current(slug: str) -> DataDictionary:
    return DataDictionary.objects.filter(cohort__slug=slug, status="published").latest("version")


def test_a_case_shows_the_dictionary_version_it_was_checked_against(clinician):
    client = jwt_client(clinician)
    created = client.post(URL, record_dict(), format="json")
    assert created.status_code == 201, created.json()
    expected = {"cohort": "respiratory", "version": current("respiratory").version}

    assert created.json()["dictionary"] == expected
    assert created.json()["dictionary_errors"] == []
    listed = client.get(URL).json()["results"][0]
    assert (listed["dictionary"], listed["dictionary_errors"]) == (expected, [])


@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.ML_ENGINEER])
def test_a_flagged_case_shows_its_problems_by_position_without_values(make_user, role):
    # A case on file from before dictionaries: an unknown key and a value outside the hard limits.
    case = CaseFactory.create(record=record_dict(findings={"heart_rate": 90, SECRET_KEY_TEXT: 1, "spo2": 140}))
    recheck_cases(Case.objects.filter(pk=case.pk))
    Case.objects.filter(pk=case.pk).update(status="approved")  # visible to the ML engineer too
    client = jwt_client(make_user(role))

    body = client.get(f"{URL}{case.pk}/").json()

    assert body["dictionary"] is None
    # A position counts in the order the database keeps the keys (PostgreSQL's jsonb sorts them),
    # the order the API's findings are given back in.
    position = list(Case.objects.get(pk=case.pk).findings).index(SECRET_KEY_TEXT)
    assert sorted(
        (issue["code"], issue["field"], issue.get("position") or 0) for issue in body["dictionary_errors"]
    ) == [
        ("outside_hard_limits", "findings.spo2", 0),
        ("unknown_finding", "findings", position),
    ]
    text = str(body["dictionary_errors"])
    assert SECRET_KEY_TEXT not in text
    assert "140" not in text


@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.ML_ENGINEER])
def test_the_dictionary_version_costs_no_query_per_case(make_user, clinician, role):
    client = jwt_client(make_user(role))

    def add(count: int) -> None:
        for _ in range(count):
            record = parse_record(record_dict())
            case = Case.submit(record, by=clinician, dictionary=current("respiratory"))
            Case.objects.filter(pk=case.pk).update(status="approved")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"{URL}?page_size=100")
        assert response.status_code == 200
        assert all(row["dictionary"]["cohort"] == "respiratory" for row in response.json()["results"])
        return len(captured)

    add(2)
    few = queries()
    add(10)
    assert queries() == few
