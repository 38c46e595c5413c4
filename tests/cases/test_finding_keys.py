"""Findings keys that hold an identifier of the case are refused wherever a case comes in.

Keys reach de-identified records and datasets as they are (until a data dictionary names the
findings): a key with the patient's surname in it passed the old residual scan, since "\\w" joins
"doe_score" into one word. Every route parses with ``cases.interchange.parse_record``, which refuses
such a key naming its position and kind, never the key itself.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from cases import importing
from cases.interchange import RecordError, parse_record
from cases.models import Case
from learning_engine import roles
from tests.cases.factories import CaseFactory, record_dict
from tests.cases.test_admin import form_data
from tests.conftest import jwt_client

pytestmark = pytest.mark.django_db

PATIENT = {
    "mrn": "MRN-448812",
    "name": "Jane Q. Doe",
    "birth_date": "1957-03-14",
    "phone": "+1 617 555 0100",
    "ssn": "123-45-6789",
    "zip": "02139",
    "address": "12 Elm St, Cambridge, MA",
}


def record(**findings: float) -> dict:
    return record_dict(patient=dict(PATIENT), findings={"heart_rate": 90, **findings})


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("doe_score", "NAME"),
        ("janeDoeLevel", "NAME"),
        ("DOE", "NAME"),
        ("d\u043ee_index", "NAME"),  # Cyrillic o
        ("do\u200be_index", "NAME"),  # zero-width space
        ("mrn448812", "MRN"),
        ("ref_448812", "MRN"),
        ("cambridge_site", "ADDRESS"),
        ("ssn_123_45_6789", "SSN"),
        ("callback_6175550100", "PHONE"),
        ("dob_1957_03_14", "DATE"),
        ("visit_dec_24th", "DATE"),
    ],
)
def test_a_key_with_an_identifier_of_the_case_is_refused_by_position_and_kind(key, kind):
    with pytest.raises(RecordError) as caught:
        parse_record(record(**{key: 1.0}))
    error = caught.value
    assert error.field == "findings"
    assert "key 2 (of 2)" in error.message
    assert kind in error.message
    assert key not in str(error)
    assert "doe" not in str(error).lower()


@pytest.mark.parametrize("key", ["temperature_c", "spo2", "wbc", "hba1c", "crp_mg_l", "fev1_fvc", "mean_radius"])
def test_keys_that_name_measurements_are_taken(key):
    assert key in parse_record(record(**{key: 1.0})).findings


def test_the_api_refuses_such_a_key_with_400_naming_the_field(clinician):
    response = jwt_client(clinician).post("/api/v1/cases/", record(doe_score=1.0), format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["errors"]) == ["findings"]
    assert "doe" not in json.dumps(body).lower()
    assert not Case.objects.exists()


def test_an_import_reports_such_a_line_and_takes_the_others(clinician):
    report = importing.import_objects([record(doe_score=1.0), record()], by=clinician)
    assert (report.created, report.failed) == (1, 1)
    assert report.errors[0].field == "findings"
    assert "doe" not in report.errors[0].message.lower()


def test_the_admin_form_takes_only_the_dictionary_s_findings(make_user, client):
    # The form has one input per finding of the dictionary: a posted key of its own goes nowhere.
    user = make_user(roles.CLINICIAN, is_staff=True)
    client.force_login(user)
    case = CaseFactory.create(record=record())
    url = reverse("admin:cases_case_change", args=[case.pk])
    data = form_data(client, url) | {"finding_doe_score": "1", "findings": json.dumps({"doe_score": 1}), "_save": "1"}

    response = client.post(url, data)

    assert response.status_code == 302
    case.refresh_from_db()
    assert "doe_score" not in case.findings
