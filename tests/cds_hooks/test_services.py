"""The CDS Hooks services (issue 17): discovery, a signed patient-view call with prefetch, cards
back, an override turned into feedback; and every way a call is refused."""

from __future__ import annotations

import copy

import pytest

from cds_hooks.cards import ICD10_CM, card_uuid
from learning_engine import roles
from models_registry.models import Feedback, Prediction
from tests.cds_hooks.calls import PATIENT_RECORD, call, prefetch
from tests.cds_hooks.factories import RecordSystem
from tests.conftest import jwt_client
from tests.models_registry.serving.factories import COLD, PNEUMONIA, PNEUMONIA_FEATURES, served_version
from tests.training.factories import ModelTypeFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving", "cold_keys")]

SERVICE = "/cds-services/patient-view-diagnosis"
ORDER_SERVICE = "/cds-services/order-select-diagnosis"


def one_card(response):
    assert response.status_code == 200, response.content
    cards = response.json()["cards"]
    assert len(cards) == 1
    return cards[0]


def test_the_record_system_discovers_calls_and_overrides_into_feedback(ehr, version):
    """The end-to-end journey, as the record system plays it."""
    # Discovery: one service per hook for the model type with an active version.
    services = ehr.get("/cds-services").json()["services"]
    assert [(s["id"], s["hook"]) for s in services] == [
        ("patient-view-diagnosis", "patient-view"),
        ("order-select-diagnosis", "order-select"),
    ]
    templates = services[0]["prefetch"]
    assert templates["patient"] == "Patient/{{context.patientId}}"
    assert templates["obs-temperature_c"] == (
        "Observation?patient={{context.patientId}}&combo-code=http://loinc.org|8310-5&_sort=-date&_count=1"
    )
    assert set(templates) == {"patient", *(f"obs-{key}" for key in PNEUMONIA_FEATURES["findings"])}
    assert all(s["description"] and s["title"] for s in services)

    # A signed patient-view call with the prefetch asked for.
    card = one_card(ehr.post(SERVICE, call()))
    prediction = Prediction.objects.get()
    assert prediction.requested_by_id == ehr.client.user_id
    assert prediction.predicted_code == PNEUMONIA
    assert prediction.subject_pseudonym  # the patient, as an HMAC: sticky A/B arms
    assert "Ada" not in str(prediction.__dict__)
    assert "MRN-0042" not in str(prediction.__dict__)
    assert card["summary"].startswith("Most likely Pneumonia, unspecified organism (J18.9): ")
    assert len(card["summary"]) < 140
    assert card["indicator"] == "info"
    assert card["uuid"] == card_uuid(prediction.pk)
    assert card["source"]["label"] == f"{version.model_type.name} {version.version}"
    assert version.version in card["detail"]
    assert "Acute upper respiratory infection" in card["detail"]
    assert card["links"] == [
        {
            "label": "Confirm or correct the diagnosis (feedback)",
            "url": f"https://cds.example-hospital.org/api/v1/predictions/{prediction.pk}/feedback/",
            "type": "absolute",
        }
    ]
    reasons = {(r["system"], r["code"]): r["display"] for r in card["overrideReasons"]}
    assert reasons[(ICD10_CM, COLD)] == "The diagnosis is Acute upper respiratory infection, unspecified"
    assert (ICD10_CM, PNEUMONIA) not in reasons  # not the diagnosis the card already gives

    # The clinician overrides the card with the diagnosis they hold true: feedback.
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {"system": ICD10_CM, "code": COLD},
                    "userComment": "Ada's chest film is clear",
                },
                "outcomeTimestamp": "2026-12-07T10:00:00Z",
            }
        ]
    }
    response = ehr.post(f"{SERVICE}/feedback", feedback)
    assert response.status_code == 200, response.content
    assert response.json() == {"feedback": [{"card": card["uuid"], "status": "recorded"}]}
    given = Feedback.objects.get()
    assert (given.prediction_id, given.diagnosis_code, given.correct) == (prediction.pk, COLD, False)
    assert given.given_by_id == ehr.client.user_id
    # The record system may send the same feedback again; a different one is a conflict.
    assert ehr.post(f"{SERVICE}/feedback", feedback).json()["feedback"][0]["status"] == "already_recorded"
    feedback["feedback"][0]["overrideReason"]["reason"]["code"] = "J45.909"
    assert ehr.post(f"{SERVICE}/feedback", feedback).status_code == 409
    assert Feedback.objects.count() == 1


def test_an_order_select_call_is_answered_alike(ehr, version):
    card = one_card(ehr.post(ORDER_SERVICE, call("order-select")))
    assert card["summary"].startswith("Most likely Pneumonia")


def test_the_card_answers_as_the_plain_predict_does(ehr, version, make_user):
    import datetime as dt

    from django.utils import timezone

    from cases.quality import age_at

    card = one_card(ehr.post(SERVICE, call()))
    # The same inputs: the prefetch gives findings, age and sex (no symptoms).
    born = dt.date.fromisoformat(PATIENT_RECORD["patient"]["birth_date"])
    body = {"findings": PNEUMONIA_FEATURES["findings"], "age": age_at(born, timezone.localdate()), "sex": "female"}
    plain = jwt_client(make_user(roles.PREDICTION_CLIENT)).post(
        "/api/v1/model-types/diagnosis/predict/", body, format="json"
    )
    assert f"{plain.json()['probabilities'][PNEUMONIA] * 100:.0f}%" in card["summary"]


def test_a_warm_service_call_reads_nothing_of_its_own_and_writes_its_jti_once(ehr, version):
    """Once the client and its keys are cached, the CDS path adds one statement to what predict
    runs: the jti's INSERT (no client query, no SELECT of used tokens before it)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    one_card(ehr.post(SERVICE, call()))
    with CaptureQueriesContext(connection) as captured:
        one_card(ehr.post(SERVICE, call()))
    statements = [query["sql"] for query in captured.captured_queries]
    inserts = [sql.split('"')[1] for sql in statements if sql.startswith("INSERT")]
    assert inserts == ["cds_hooks_usedtoken", "models_registry_prediction", "monitoring_inputtally"]
    assert not [sql for sql in statements if "cds_hooks_" in sql and not sql.startswith("INSERT")]


def test_a_temperature_in_fahrenheit_is_converted_to_the_dictionarys_unit(ehr, version):
    baseline = one_card(ehr.post(SERVICE, call()))
    _, data = prefetch()
    observation = data["obs-temperature_c"]["entry"][0]["resource"]
    observation["valueQuantity"] = {
        "value": 102.92,
        "unit": "°F",
        "system": "http://unitsofmeasure.org",
        "code": "[degF]",
    }
    card = one_card(ehr.post(SERVICE, call(prefetch=data)))
    assert card["summary"] == baseline["summary"]
    assert card["indicator"] == "info"


def test_a_unit_that_cannot_be_converted_leaves_the_finding_out_and_says_so(ehr, version):
    _, data = prefetch()
    data["obs-crp"]["entry"][0]["resource"]["valueQuantity"]["code"] = "mm[Hg]"
    card = one_card(ehr.post(SERVICE, call(prefetch=data)))
    assert card["indicator"] == "warning"
    assert "C reactive protein" in card["detail"]
    assert "imputed" in card["detail"]


def test_data_the_record_system_does_not_have_is_imputed_and_listed(ehr, version):
    _, data = prefetch(null=("crp", "nt_probnp"))
    card = one_card(ehr.post(SERVICE, call(prefetch=data)))
    assert card["indicator"] == "warning"
    assert "C reactive protein" in card["detail"]
    assert "75%" in card["detail"]


def test_too_little_data_is_a_card_saying_what_is_missing_and_nothing_is_logged(ehr, version):
    missing = ("temperature_c", "heart_rate", "respiratory_rate", "spo2", "wbc")
    _, data = prefetch(null=missing)
    card = one_card(ehr.post(SERVICE, call(prefetch=data)))
    assert "uuid" not in card
    assert "overrideReasons" not in card
    assert card["summary"].startswith("No prediction")
    assert "Body temperature" in card["detail"]
    assert "Leukocytes" in card["detail"]
    assert not Prediction.objects.exists()


def test_a_prefetch_key_the_record_system_did_not_satisfy_is_412(ehr, version):
    _, data = prefetch()
    del data["obs-spo2"], data["patient"]
    response = ehr.post(SERVICE, call(prefetch=data))
    assert response.status_code == 412
    assert response.json()["code"] == "prefetch_missing"
    assert response.json()["missing"] == ["patient", "obs-spo2"]
    assert not Prediction.objects.exists()


def test_an_observation_of_another_patient_is_refused(ehr, version):
    _, data = prefetch()
    _, other = prefetch({**PATIENT_RECORD, "patient": {**PATIENT_RECORD["patient"], "mrn": "MRN-9"}})
    data["obs-wbc"] = other["obs-wbc"]
    response = ehr.post(SERVICE, call(prefetch=data))
    assert response.status_code == 400
    assert response.json()["code"] == "wrong_patient"
    assert response.json()["field"] == "prefetch.obs-wbc.entry[0]"


def test_a_patient_other_than_the_contexts_is_refused(ehr, version):
    body = call()
    body["context"]["patientId"] = "someone-else"
    response = ehr.post(SERVICE, body)
    assert response.status_code == 400
    assert response.json()["code"] == "wrong_patient"


def test_an_invalid_fhir_resource_is_400_naming_the_element_not_the_value(ehr, version):
    _, data = prefetch()
    data["obs-spo2"]["entry"][0]["resource"]["valueQuantity"]["value"] = "ninety-one percent"
    response = ehr.post(SERVICE, call(prefetch=data))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_prefetch"
    assert body["field"].startswith("prefetch.obs-spo2.entry[0]")
    assert "ninety-one" not in response.content.decode()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hook": "order-sign"}, "hook"),
        ({"hookInstance": "not-a-uuid"}, "hookInstance"),
        ({"context": {"patientId": "p1"}}, "context.userId"),
        ({"context": {"userId": "Practitioner/1", "patientId": "p/1"}}, "context.patientId"),
        ({"fhirAuthorization": {"access_token": "x"}, "fhirServer": None}, "fhirServer"),
        ({"prefetch": []}, "prefetch"),
    ],
)
def test_a_call_body_out_of_the_specification_is_400_naming_the_field(ehr, version, change, field):
    body = {key: value for key, value in {**call(), **change}.items() if value is not None}
    response = ehr.post(SERVICE, body)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_an_order_select_call_needs_its_selections_and_draft_orders(ehr, version):
    body = call("order-select")
    del body["context"]["draftOrders"]
    assert ehr.post(ORDER_SERVICE, body).json()["field"] == "context.draftOrders"


@pytest.mark.parametrize("path", ["/cds-services/diagnosis", "/cds-services/patient-view-nosuchtype"])
def test_an_unknown_service_is_404(ehr, version, path):
    assert ehr.post(path, call()).status_code == 404


def test_a_model_type_without_an_active_version_is_not_offered(ehr, version):
    ModelTypeFactory.create(slug="idle", cohort="respiratory")
    assert {s["id"] for s in ehr.get("/cds-services").json()["services"]} == {
        "patient-view-diagnosis",
        "order-select-diagnosis",
    }
    assert ehr.post("/cds-services/patient-view-idle", call()).status_code == 404


class TestFeedback:
    @pytest.fixture
    def card(self, ehr, version):
        return one_card(ehr.post(SERVICE, call()))

    def send(self, ehr, card_uuid, path=f"{SERVICE}/feedback", **entry):
        body = {
            "feedback": [
                {"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": "2026-12-07T10:00:00Z", **entry}
            ]
        }
        return ehr.post(path, body)

    @pytest.mark.parametrize(
        "entry",
        [
            {"outcome": "accepted", "acceptedSuggestions": [{"id": "x"}]},
            {},  # overridden without a reason
            {
                "overrideReason": {
                    "reason": {
                        "system": "urn:clinical-diagnosis-engine:cds-hooks:override-reason",
                        "code": "not-applicable",
                    }
                }
            },
            {"overrideReason": {"userComment": "no"}},
        ],
    )
    def test_an_outcome_without_a_diagnosis_is_noted_and_records_nothing(self, ehr, card, entry):
        response = self.send(ehr, card["uuid"], **entry)
        assert response.json()["feedback"][0]["status"] == "noted"
        assert not Feedback.objects.exists()

    def test_a_made_up_or_altered_card_uuid_is_404(self, ehr, card):
        altered = card["uuid"][:-1] + ("0" if card["uuid"][-1] != "0" else "1")
        for value in (altered, "4e0a3a1e-3283-4575-ab82-028d55fe2719", "not a uuid"):
            assert self.send(ehr, value).status_code == 404

    def test_the_card_of_another_record_systems_prediction_is_404(self, ehr, card, make_user):
        other = RecordSystem(alg="RS384", issuer="https://other-ehr.example.org")
        other.register(make_user(roles.PREDICTION_CLIENT))
        reason = {"reason": {"system": ICD10_CM, "code": COLD}}
        assert self.send(other, card["uuid"], overrideReason=reason).status_code == 404
        assert not Feedback.objects.exists()

    def test_a_card_sent_to_another_services_feedback_is_404(self, ehr, card):
        served_version(model_type=ModelTypeFactory.create(slug="other", cohort="respiratory"))
        reason = {"reason": {"system": ICD10_CM, "code": COLD}}
        response = self.send(ehr, card["uuid"], path="/cds-services/patient-view-other/feedback", overrideReason=reason)
        assert response.status_code == 404

    def test_a_diagnosis_outside_the_cohorts_code_set_is_400(self, ehr, card):
        response = self.send(ehr, card["uuid"], overrideReason={"reason": {"system": ICD10_CM, "code": "Z99.9"}})
        assert response.status_code == 400
        assert response.json()["code"] == "unknown_diagnosis_code"

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"feedback": []},
            {"feedback": ["x"]},
            {"feedback": [{"card": "u", "outcome": "maybe", "outcomeTimestamp": "t"}]},
        ],
    )
    def test_a_malformed_body_is_400(self, ehr, card, body):
        response = ehr.post(f"{SERVICE}/feedback", body)
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_feedback"

    def test_the_token_may_name_the_feedback_url_or_its_services(self, ehr, card):
        reason = {"reason": {"system": ICD10_CM, "code": COLD}}
        body = {
            "feedback": [
                {"card": card["uuid"], "outcome": "overridden", "overrideReason": reason, "outcomeTimestamp": "t"}
            ]
        }
        token = ehr.token(SERVICE)  # aud: the service's URL
        assert ehr.api(token).post(f"{SERVICE}/feedback", body, format="json").status_code == 200

    def test_an_account_that_may_predict_but_not_give_feedback_is_403(self, make_user, version):
        from django.contrib.auth.models import Permission

        user = make_user(None)
        user.user_permissions.add(Permission.objects.get(codename="predict", content_type__app_label="models_registry"))
        system = RecordSystem(alg="RS384", issuer="https://predict-only.example.org")
        system.register(user)
        card = one_card(system.post(SERVICE, call()))
        assert self.send(system, card["uuid"]).status_code == 403


def test_the_user_comment_is_never_stored(ehr, version):
    card = one_card(ehr.post(SERVICE, call()))
    entry = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"reason": {"system": ICD10_CM, "code": COLD}, "userComment": "Ada Quinn MRN-0042"},
        "outcomeTimestamp": "2026-12-07T10:00:00Z",
    }
    ehr.post(f"{SERVICE}/feedback", {"feedback": [copy.deepcopy(entry)]})
    stored = str(list(Feedback.objects.values()))
    assert "Ada" not in stored
    assert "MRN" not in stored


def test_the_feedback_link_is_the_base_url_and_the_path_below_the_script_prefix():
    """The path is reversed once per script prefix and URL configuration, then only the id changes."""
    from django.urls import get_script_prefix, set_script_prefix

    from cds_hooks.models import TrustedClient
    from cds_hooks.views import _feedback_path, _feedback_url

    client = TrustedClient(audience="https://cds.example-hospital.org/engine/")
    before = get_script_prefix()
    _feedback_path.cache_clear()
    try:
        for prefix in ("/engine/", "/", "/engine/"):
            set_script_prefix(prefix)
            for pk in (7, 123456):
                expected = f"https://cds.example-hospital.org/engine/api/v1/predictions/{pk}/feedback/"
                assert _feedback_url(client, pk) == expected
    finally:
        set_script_prefix(before)
