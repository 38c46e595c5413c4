"""The cohort API: list, detail with versions, the record JSON Schema; and who may read them."""

from __future__ import annotations

import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from jsonschema import Draft202012Validator

from cases import demo
from cases.dictionary.files import load_demo_dictionaries
from cases.models import DataDictionary
from learning_engine import roles
from tests.cases.dictionary_factories import published_dictionary, small_definition

pytestmark = pytest.mark.django_db
LIST = "/api/v1/cohorts/"
READERS = (roles.CLINICIAN, roles.ML_ENGINEER, roles.CLINICAL_LEAD, roles.PREDICTION_CLIENT)


@pytest.fixture
def demo_dictionaries(lead):
    return load_demo_dictionaries(by=lead)


@pytest.mark.parametrize("role", READERS)
def test_every_case_role_lists_cohorts_with_their_current_version(api_client_for, demo_dictionaries, role):
    response = api_client_for(role).get(LIST)
    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "slug": "breast-mass",
            "name": "Breast mass (fine-needle aspirate)",
            "description": demo_dictionaries[0].dictionary.cohort.description,
            "current_version": 1,
        },
        {
            "slug": "respiratory",
            "name": "Respiratory presentations",
            "description": demo_dictionaries[1].dictionary.cohort.description,
            "current_version": 1,
        },
    ]


@pytest.mark.parametrize("path", [LIST, f"{LIST}respiratory/", f"{LIST}respiratory/schema/"])
def test_anonymous_and_roleless_users_are_refused(api_client_for, make_user, demo_dictionaries, path):
    anonymous = api_client_for("anonymous").get(path)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    from tests.conftest import jwt_client

    roleless = jwt_client(make_user(None)).get(path)
    assert roleless.status_code == 403
    assert roleless.json()["code"] == "permission_denied"


def test_detail_lists_every_version_newest_first(api_client_for, lead):
    first = published_dictionary(by=lead)
    first.copy(by=lead).edit(small_definition(demographics={"age": False, "sex": False}), by=lead)
    body = api_client_for(roles.ML_ENGINEER).get(f"{LIST}small/").json()
    assert body["current_version"] == 1
    assert [(d["version"], d["status"], d["based_on"]) for d in body["dictionaries"]] == [
        (2, "draft", 1),
        (1, "published", None),
    ]
    assert body["dictionaries"][1]["definition"] == small_definition()
    assert body["dictionaries"][1]["published_by"] == lead.username


def test_unknown_cohort_is_404(api_client_for):
    response = api_client_for(roles.CLINICIAN).get(f"{LIST}nope/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_list_and_detail_cost_a_fixed_number_of_queries(api_client_for, lead):
    client = api_client_for(roles.CLINICIAN)
    published_dictionary("one", by=lead)
    client.get(LIST)  # warm the session and permission caches
    with CaptureQueriesContext(connection) as few:
        client.get(LIST)
    for index in range(5):
        published_dictionary(f"more-{index}", by=lead).copy(by=lead)
    with CaptureQueriesContext(connection) as many:
        client.get(LIST)
    assert len(many) == len(few)


# --- The record JSON Schema ----------------------------------------------------------------------


def test_the_schema_is_valid_json_schema_and_takes_every_clean_demo_record(api_client_for, demo_dictionaries):
    client = api_client_for(roles.PREDICTION_CLIENT)
    for slug, records in (
        ("breast-mass", list(demo.breast_mass_records())),
        ("respiratory", list(itertools.islice(demo.respiratory_records(300), 300))),
    ):
        schema = client.get(f"{LIST}{slug}/schema/").json()
        Draft202012Validator.check_schema(schema)
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        planted = 0
        for record in records:
            errors = list(validator.iter_errors(record))
            if record["findings"].get("temperature_c", 0) > 50:  # the demo's planted Fahrenheit values
                planted += 1
                assert [list(error.absolute_path) for error in errors] == [["findings", "temperature_c"]]
            else:
                assert errors == [], record["external_id"]
        assert planted < len(records) * 0.03


def test_the_schema_refuses_what_the_dictionary_refuses(api_client_for, demo_dictionaries):
    schema = api_client_for(roles.CLINICIAN).get(f"{LIST}breast-mass/schema/").json()
    validator = Draft202012Validator(schema)
    record = next(demo.breast_mass_records())
    assert validator.is_valid(record)
    for bad in (
        {**record, "findings": {**record["findings"], "bogus_feature": 1.0}},
        {**record, "findings": {**record["findings"], "mean_radius": -5}},
        {**record, "symptoms": ["cough"]},
        {**record, "diagnosis": {"code": "ZZZ", "label": ""}},
        {**record, "cohort": "respiratory"},
    ):
        assert not validator.is_valid(bad)
    properties = schema["properties"]["findings"]["properties"]
    assert properties["mean_smoothness"]["description"].startswith("Unit (UCUM): 1.")
    assert schema["title"] == "A breast-mass case record (data dictionary version 1)"


def test_schema_of_a_given_version_and_its_errors(api_client_for, lead):
    first = published_dictionary(by=lead)
    second = first.copy(by=lead)
    second.edit(small_definition(diagnoses=[{"code": "J06.9", "display_name": "URI"}]), by=lead)
    second.publish(by=lead)
    client = api_client_for(roles.CLINICIAN)
    codes = lambda body: body["properties"]["diagnosis"]["properties"]["code"]["enum"]  # noqa: E731
    assert codes(client.get(f"{LIST}small/schema/").json()) == ["", "J06.9"]
    assert codes(client.get(f"{LIST}small/schema/?version=1").json()) == ["", "J18.9", "J06.9"]
    missing = client.get(f"{LIST}small/schema/?version=9")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    bad = client.get(f"{LIST}small/schema/?version=x")
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid"


def test_a_cohort_without_a_published_version_has_no_schema(api_client_for, lead):
    from cases.models import Cohort

    DataDictionary.create_draft(Cohort.objects.create(slug="drafty", name="D"), small_definition(), by=lead)
    response = api_client_for(roles.CLINICIAN).get(f"{LIST}drafty/schema/")
    assert response.status_code == 404
    assert "no published dictionary version" in response.json()["detail"]
