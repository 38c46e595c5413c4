"""Names from the data dictionary on the training pages (issue 11): a dataset's cases per label and
its charts, a job's confusion matrix (both axes) and per-class metrics. A label no dictionary names
(legacy data) shows alone."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from learning_engine import roles
from tests.training.test_admin import ready_dataset, set_state, submit
from training.models import ModelType

PNEUMONIA = "Pneumonia, unspecified organism"
ASTHMA = "Unspecified asthma, uncomplicated"

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("cold_labels")]


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def evaluation() -> dict[str, Any]:
    labels = ["J18.9", "J45.909", "Z99.9"]
    return {
        "accuracy": 0.7,
        "test_size": 10,
        "confusion_matrix": {"labels": labels, "matrix": [[3, 1, 0], [1, 2, 0], [0, 1, 2]]},
        "per_class": [
            {"label": label, "precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4, "auroc": 0.8}
            for label in labels
        ],
    }


def test_the_dataset_page_names_each_label_in_the_table_and_the_charts(staff, model_type):
    client, engineer = staff(roles.ML_ENGINEER)
    dataset = ready_dataset(
        model_type,
        engineer,
        label_counts={"train": {"J18.9": 4, "J45.909": 3, "Z99.9": 1}, "validation": {"J18.9": 2}, "test": {}},
    )

    response = client.get(reverse("admin:training_datasetsnapshot_change", args=[dataset.pk]))

    assert response.status_code == 200
    rows = {row["label"]: row["name"] for row in response.context["composition"]["rows"]}
    assert rows == {"J18.9": PNEUMONIA, "J45.909": ASTHMA, "Z99.9": ""}
    page = text(response.content.decode())
    assert f"J18.9 {PNEUMONIA} 4 2 0 6" in page
    assert "Z99.9 1 0 0 1" in page  # a code no dictionary names: alone
    assert f"<title>J18.9 {PNEUMONIA}: 4 cases</title>" in response.content.decode()  # the bar's tooltip
    assert "<title>Z99.9: 1 cases</title>" in response.content.decode()


def test_the_dataset_live_fragment_names_the_labels_too(staff, model_type):
    client, engineer = staff(roles.ML_ENGINEER)
    dataset = ready_dataset(model_type, engineer)

    response = client.get(reverse("admin:training_datasetsnapshot_live", args=[dataset.pk]))

    assert f"J45.909 {ASTHMA}" in text(response.content.decode())


def test_the_dataset_page_reads_the_dictionaries_once(staff, model_type):
    client, engineer = staff(roles.ML_ENGINEER)
    dataset = ready_dataset(model_type, engineer)
    client.get(reverse("admin:training_datasetsnapshot_change", args=[dataset.pk]))

    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("admin:training_datasetsnapshot_change", args=[dataset.pk]))

    assert len([q for q in queries if "cases_datadictionary" in q["sql"]]) == 1


def test_the_job_page_names_both_axes_of_the_confusion_matrix_and_each_class(staff, model_type):
    client, engineer = staff(roles.ML_ENGINEER)
    job = set_state(submit(model_type, engineer), status="completed", progress=100.0, evaluation=evaluation())

    response = client.get(reverse("admin:training_trainingjob_change", args=[job.pk]))

    assert response.status_code == 200
    confusion = response.context["confusion"]
    assert confusion["labels"] == ["J18.9", "J45.909", "Z99.9"]  # the codes, as before
    assert confusion["columns"] == [
        {"label": "J18.9", "name": PNEUMONIA},
        {"label": "J45.909", "name": ASTHMA},
        {"label": "Z99.9", "name": ""},
    ]
    assert [row["name"] for row in confusion["rows"]] == [PNEUMONIA, ASTHMA, ""]
    page = text(response.content.decode())
    # The header (predicted), then the rows (true), each code with its name.
    assert f"true \\ predicted J18.9 {PNEUMONIA} J45.909 {ASTHMA} Z99.9 total" in page
    assert f"J18.9 {PNEUMONIA} 3 1 0 4" in page
    assert "Z99.9 0 1 2 3" in page
    assert [row["name"] for row in response.context["per_class"]] == [PNEUMONIA, ASTHMA, ""]
    assert f"J45.909 {ASTHMA} 75.0% 75.0% 75.0%" in page


def test_a_model_type_whose_cohort_has_no_dictionary_shows_codes_alone(staff):
    client, engineer = staff(roles.ML_ENGINEER)
    legacy = ModelType.objects.create(slug="legacy", name="Legacy", cohort="no-dictionary")
    job = set_state(submit(legacy, engineer), status="completed", progress=100.0, evaluation=evaluation())

    response = client.get(reverse("admin:training_trainingjob_change", args=[job.pk]))

    assert response.status_code == 200
    assert [column["name"] for column in response.context["confusion"]["columns"]] == ["", "", ""]
    assert PNEUMONIA not in response.content.decode()


def test_a_dataset_is_named_by_the_dictionary_version_it_was_built_under(staff):
    client, engineer = staff(roles.ML_ENGINEER)
    from cases.models import DataDictionary
    from tests.cases.dictionary_factories import published_dictionary, small_definition
    from training.models import DatasetSnapshot

    first = published_dictionary("small")
    published_dictionary("small", definition=small_definition(diagnoses=[{"code": "J18.9", "display_name": "Renamed"}]))
    small = ModelType.objects.create(slug="small-diagnosis", name="Small", cohort="small")
    built_under_v1 = ready_dataset(small, engineer)
    DatasetSnapshot.objects.filter(pk=built_under_v1.pk).update(dictionary=first)
    built_before_dictionaries = ready_dataset(small, engineer)
    assert DataDictionary.objects.filter(cohort__slug="small", status="published").count() == 2

    def names(dataset: DatasetSnapshot) -> dict[str, str]:
        response = client.get(reverse("admin:training_datasetsnapshot_change", args=[dataset.pk]))
        return {row["label"]: row["name"] for row in response.context["composition"]["rows"]}

    assert names(built_under_v1)["J18.9"] == PNEUMONIA  # its own version's name
    assert names(built_before_dictionaries)["J18.9"] == "Renamed"  # none recorded: the cohort's current one
