"""Names from the data dictionary on the registry pages (issue 11): a version's confusion matrix and
per-class metrics, the comparison's test-set labels, the training ranges. A code no dictionary names
shows alone. The A/B test's pages: tests/models_registry/experiments/test_admin_labels.py."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from learning_engine import roles
from tests.models_registry.registry.factories import ModelVersionFactory, ready_snapshot
from tests.training.factories import ModelTypeFactory

PNEUMONIA = "Pneumonia, unspecified organism"
URI = "Acute upper respiratory infection, unspecified"

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("cold_labels")]


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_version_page_names_the_labels_of_its_confusion_matrix_and_per_class_table(staff, engineer):
    lead_client, _ = staff(roles.CLINICAL_LEAD)
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer, seed=1)
    version = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)

    response = lead_client.get(reverse("admin:models_registry_modelversion_change", args=[version.pk]))

    assert response.status_code == 200
    names = {column["label"]: column["name"] for column in response.context["confusion"]["columns"]}
    assert names == {"J06.9": URI, "J18.9": PNEUMONIA}
    assert {row["label"]: row["name"] for row in response.context["per_class"]} == names
    page = text(response.content.decode())
    assert f"true \\ predicted J06.9 {URI} J18.9 {PNEUMONIA} total" in page


def test_the_compare_page_names_the_labels_of_the_test_set(staff, engineer):
    lead_client, _ = staff(roles.CLINICAL_LEAD)
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer, seed=1)
    a = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer, shuffle_labels=True)
    b = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)

    response = lead_client.get(f"{reverse('admin:models_registry_modelversion_compare')}?a={a.pk}&b={b.pk}")

    assert response.status_code == 200
    assert f"Labels of the test set: J06.9 {URI}; J18.9 {PNEUMONIA}." in text(response.content.decode())


def test_a_version_page_gives_the_training_ranges_with_names_and_printed_units(staff, engineer):
    lead_client, _ = staff(roles.CLINICAL_LEAD)
    from cases.models import DataDictionary
    from training.models import DatasetSnapshot

    respiratory = DataDictionary.objects.get(cohort__slug="respiratory", status="published")
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer)
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(dictionary=respiratory)
    version = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)

    page = text(
        lead_client.get(reverse("admin:models_registry_modelversion_change", args=[version.pk])).content.decode()
    )

    assert re.search(r"Body temperature °C [\d.]+ [\d.]+", page)  # UCUM Cel printed as °C
    assert " Cel " not in page
    assert re.search(r"Oxygen saturation[^%]* % [\d.]+ [\d.]+", page)
