"""An admin list asked for an id no database column holds (``?dataset=<25 digits>``) answers 400,
not a 500: the number reached SQLite's driver, which raised OverflowError (issue 10, part 7)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from cases.access_log import AccessLogEntry, record_access
from learning_engine import roles
from learning_engine.admin_links import is_id_sized
from tests.cases.factories import CaseFactory

pytestmark = pytest.mark.django_db

HUGE_IDS = ("9" * 25, "1" + "0" * 400, "9223372036854775808")


@pytest.mark.parametrize(
    ("url_name", "parameter", "role"),
    [
        ("admin:training_trainingjob_changelist", "dataset", roles.ML_ENGINEER),
        ("admin:models_registry_modelversion_changelist", "dataset", roles.CLINICAL_LEAD),
        ("admin:models_registry_performancerecord_changelist", "version", roles.ML_ENGINEER),
        ("admin:models_registry_artifactrejection_changelist", "actor", roles.ML_ENGINEER),
        ("admin:models_registry_activationhistory_changelist", "actor", roles.CLINICAL_LEAD),
        ("admin:cases_accesslogentry_changelist", "actor", roles.PRIVACY_OFFICER),
    ],
)
@pytest.mark.parametrize("value", HUGE_IDS)
def test_a_foreign_key_lookup_beyond_any_id_is_a_400(client, make_user, url_name, parameter, role, value):
    client.force_login(make_user(role, is_staff=True))

    response = client.get(reverse(url_name), {parameter: value})

    assert response.status_code == 400


def test_an_id_a_column_holds_is_still_a_lookup(client, make_user):
    user = make_user(roles.PRIVACY_OFFICER, is_staff=True)
    client.force_login(user)

    response = client.get(reverse("admin:cases_accesslogentry_changelist"), {"actor": str(user.pk)})

    assert response.status_code == 200


@pytest.mark.parametrize("value", HUGE_IDS)
def test_the_access_log_case_box_refuses_a_huge_id_and_still_finds_a_case(client, make_user, clinician, value):
    case = CaseFactory.create()
    record_access(action=AccessLogEntry.Action.VIEW, case_ids=[case.pk], actor=clinician)
    client.force_login(make_user(roles.PRIVACY_OFFICER, is_staff=True))

    response = client.get(reverse("admin:cases_accesslogentry_changelist"), {"case": value})
    found = client.get(reverse("admin:cases_accesslogentry_changelist"), {"case": str(case.pk)})

    assert response.status_code == 400
    assert found.context["cl"].result_count == 1


def test_id_sized():
    assert is_id_sized("9223372036854775807")
    assert is_id_sized("-5")
    assert is_id_sized("abc")
    assert not is_id_sized("9223372036854775808")
    assert not is_id_sized("9" * 5000)
