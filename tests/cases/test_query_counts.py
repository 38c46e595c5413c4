"""The case list costs the same number of queries for 5 cases as for 200 (no N+1)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from learning_engine import roles
from tests.cases.factories import CaseFactory
from tests.conftest import jwt_client

URL = "/api/v1/cases/?page_size=500"

# Each factory case brings its own submitter and reviewer, which is what would make a missing
# select_related show. An ML engineer sees only approved and retracted cases.
VISIBLE_STATES = {
    roles.CLINICIAN: ("approved", "retracted", "submitted", "rejected"),
    roles.ML_ENGINEER: ("approved", "retracted"),
}


def make_cases(count: int, states: tuple[str, ...]) -> None:
    for index in range(count):
        CaseFactory.create(state=states[index % len(states)])


def list_queries(client) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL)
    assert response.status_code == 200
    return len(queries), len(response.json()["results"])


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.ML_ENGINEER])
def test_case_list_queries_do_not_grow_with_the_number_of_cases(make_user, role):
    client = jwt_client(make_user(role))
    CaseFactory.create()  # a case the ML engineer cannot see, so its filter is in play

    make_cases(5, VISIBLE_STATES[role])
    few_queries, few_rows = list_queries(client)
    make_cases(195, VISIBLE_STATES[role])
    many_queries, many_rows = list_queries(client)

    extra = 1 if role == roles.CLINICIAN else 0
    assert (few_rows, many_rows) == (5 + extra, 200 + extra)
    assert many_queries == few_queries
