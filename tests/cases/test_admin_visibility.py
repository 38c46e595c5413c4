"""Without PHI access the case admin shows exactly the cases the API shows (issue 10 part 8):
approved and retracted ones. A submitted or rejected case (its status, diagnosis and quality
issues) is not found, as the API answers 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from cases.models import Case
from learning_engine import roles
from tests.cases.factories import CaseFactory
from tests.conftest import jwt_client

CHANGELIST = reverse("admin:cases_case_changelist")


@pytest.fixture
def cases_by_state(db) -> dict[str, Case]:
    return {
        state: CaseFactory.create(**({state: True} if state != "submitted" else {}))
        for state in ("submitted", "rejected", "approved", "retracted")
    }


def admin_ids(client) -> set[int]:
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    return {case.pk for case in response.context["cl"].result_list}


def api_ids(user) -> set[int]:
    response = jwt_client(user).get("/api/v1/cases/")
    assert response.status_code == 200
    return {row["id"] for row in response.json()["results"]}


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_without_phi_access_the_admin_lists_the_cases_the_api_lists(role, make_user, client, cases_by_state):
    user = make_user(role, is_staff=True)
    client.force_login(user)

    visible = {cases_by_state["approved"].pk, cases_by_state["retracted"].pk}
    assert admin_ids(client) == visible
    assert api_ids(user) == visible
    # Filtering by status does not bring them back.
    response = client.get(CHANGELIST, {"status__exact": Case.Status.REJECTED})
    assert list(response.context["cl"].result_list) == []


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["submitted", "rejected"])
@pytest.mark.parametrize("page", ["change", "history"])
def test_without_phi_access_a_submitted_or_rejected_case_page_is_not_found(
    state, page, make_user, client, cases_by_state
):
    user = make_user(roles.ML_ENGINEER, is_staff=True)
    client.force_login(user)
    case = cases_by_state[state]

    response = client.get(reverse(f"admin:cases_case_{page}", args=[case.pk]), follow=True)

    # The admin's answer for an object that does not exist: back to the index, with a message.
    assert response.redirect_chain
    assert response.redirect_chain[-1][0] == reverse("admin:index")
    assert any("doesn\u2019t exist" in str(message) for message in response.context["messages"])
    assert jwt_client(user).get(f"/api/v1/cases/{case.pk}/").status_code == 404
    # An approved case's page opens.
    approved = cases_by_state["approved"]
    assert client.get(reverse(f"admin:cases_case_{page}", args=[approved.pk])).status_code == 200


@pytest.mark.django_db
def test_a_clinician_sees_every_case_in_both(make_user, client, cases_by_state):
    user = make_user(roles.CLINICIAN, is_staff=True)
    client.force_login(user)
    every = {case.pk for case in cases_by_state.values()}

    assert admin_ids(client) == every
    assert api_ids(user) == every
