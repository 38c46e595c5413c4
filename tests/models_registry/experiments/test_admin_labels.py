"""Names from the data dictionary on the A/B test pages (issue 11): each arm's per-diagnosis tables in
the admin and the API's figures, shadow predictions judged against the feedback on A. A code no
dictionary names shows alone."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from learning_engine import roles
from models_registry.experiments.figures import per_diagnosis
from models_registry.models import Feedback, Prediction
from tests.models_registry.experiments.factories import RIGHT, WRONG, log_arm, start_test

PNEUMONIA = "Pneumonia, unspecified organism"
URI = "Acute upper respiratory infection, unspecified"

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("cold_labels")]


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_ab_page_has_a_table_per_arm_and_diagnosis_with_names(staff, running, engineer):
    lead_client, _ = staff(roles.CLINICAL_LEAD)
    log_arm(running, "a", predicted=10, labelled=10, correct=6, by=engineer)  # 6 right, 4 were WRONG (J06.9)
    log_arm(running, "b", predicted=5, labelled=5, correct=5, by=engineer)
    legacy = log_arm(running, "b", predicted=2, by=engineer)
    Prediction.objects.filter(pk__in=[p.pk for p in legacy]).update(predicted_code="Z99.9")

    response = lead_client.get(reverse("admin:models_registry_abtest_change", args=[running.pk]))

    assert response.status_code == 200
    tables = {table["arm"]: table for table in response.context["diagnosis_tables"]}
    a_rows = {row["code"]: row for row in tables["A"]["rows"]}
    assert (a_rows[RIGHT]["predicted"], a_rows[RIGHT]["confirmed"], a_rows[RIGHT]["correct"]) == (10, 6, 6)
    assert (a_rows[WRONG]["predicted"], a_rows[WRONG]["confirmed"], a_rows[WRONG]["correct"]) == (0, 4, 0)
    page = text(response.content.decode())
    assert f"Arm A ({running.version_a.version}) per diagnosis" in page
    assert f"J18.9 {PNEUMONIA} 10 6 6 100.0%" in page
    assert f"J06.9 {URI} 0 4 0 0.0%" in page
    assert f"J18.9 {PNEUMONIA} 5 5 5 100.0%" in page  # arm B
    assert "Z99.9 2 0 0 —" in page  # a code no dictionary names: alone


def test_shadow_predictions_of_b_are_judged_against_the_feedback_on_a(pair, engineer):
    test = start_test(*pair, by=engineer, mode="shadow", traffic_split=0.0)
    answered = log_arm(test, "a", predicted=3, labelled=3, correct=2, by=engineer)  # truths: R, R, W
    for row, code in zip(answered, [RIGHT, WRONG, WRONG], strict=True):
        Prediction.objects.create(
            model_type_id=test.model_type_id,
            version=test.version_b,
            arm="b",
            ab_test=test,
            shadow_of=row,
            subject_pseudonym=hashlib.sha256(str(row.pk).encode()).hexdigest(),
            input_sha256="0" * 64,
            predicted_code=code,
            probabilities={code: 1.0},
            latency_ms=1.0,
            requested_by=engineer,
        )
    assert list(Feedback.objects.order_by("pk").values_list("diagnosis_code", flat=True)) == [RIGHT, RIGHT, WRONG]

    tables = per_diagnosis(test)

    assert tables["a"] == [
        {"code": WRONG, "display_name": URI, "predicted": 0, "confirmed": 1, "correct": 0},
        {"code": RIGHT, "display_name": PNEUMONIA, "predicted": 3, "confirmed": 2, "correct": 2},
    ]
    assert tables["b"] == [
        {"code": WRONG, "display_name": URI, "predicted": 2, "confirmed": 1, "correct": 1},
        {"code": RIGHT, "display_name": PNEUMONIA, "predicted": 1, "confirmed": 2, "correct": 1},
    ]


def test_the_ab_page_costs_the_same_queries_for_few_and_many_predictions(staff, running, engineer):
    lead_client, _ = staff(roles.CLINICAL_LEAD)
    url = reverse("admin:models_registry_abtest_change", args=[running.pk])
    log_arm(running, "a", predicted=3, labelled=2, correct=1, by=engineer)
    lead_client.get(url)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert lead_client.get(url).status_code == 200
        return len(captured)

    few = queries()
    log_arm(running, "a", predicted=200, labelled=150, correct=100, by=engineer)
    log_arm(running, "b", predicted=200, labelled=150, correct=120, by=engineer)
    assert queries() == few


def test_an_ended_test_shows_the_per_diagnosis_figures_it_ended_with(staff, running, engineer, lead):
    lead_client, _ = staff(roles.CLINICAL_LEAD)
    log_arm(running, "a", predicted=4, labelled=4, correct=4, by=engineer)
    running.stop(by=lead, reason="Enough.")
    late = log_arm(running, "b", predicted=3, labelled=3, correct=3, by=engineer)  # after the end
    assert late

    response = lead_client.get(reverse("admin:models_registry_abtest_change", args=[running.pk]))

    tables = {table["arm"]: table["rows"] for table in response.context["diagnosis_tables"]}
    assert [(row["code"], row["predicted"]) for row in tables["A"]] == [(RIGHT, 4)]
    assert tables["B"] == []  # what the test ended with, not the log of now
    assert f"J18.9 {PNEUMONIA} 4 4 4 100.0%" in text(response.content.decode())


def test_the_api_figures_give_each_arms_diagnoses_with_their_names(running, engineer, lead):
    from tests.conftest import jwt_client

    log_arm(running, "a", predicted=3, labelled=2, correct=1, by=engineer)

    figures = (
        jwt_client(lead).get(f"/api/v1/model-types/{running.model_type.slug}/ab-tests/{running.pk}/").json()["figures"]
    )

    assert figures["per_diagnosis"]["a"] == [
        {"code": WRONG, "display_name": URI, "predicted": 0, "confirmed": 1, "correct": 0},
        {"code": RIGHT, "display_name": PNEUMONIA, "predicted": 3, "confirmed": 1, "correct": 1},
    ]
    assert figures["per_diagnosis"]["b"] == []
