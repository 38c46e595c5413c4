"""Dataset snapshots and model versions record the data dictionary version they were built and
trained under; versions record the train split's ranges (issue 11, docs/data-dictionary.md).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import numpy as np
import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile

from cases.dictionary.checking import current_dictionary
from cases.models import Case, DataDictionary
from learning_engine.exceptions import TransitionError
from models_registry.models import ModelVersion
from models_registry.registry.registration import register_completed_job
from tests.cases.dictionary_factories import published_dictionary, small_definition
from tests.conftest import jwt_client
from tests.models_registry.registry.factories import (
    ModelVersionFactory,
    artifact_bytes,
    external_completed_job,
    ready_snapshot,
    snapshot_rows,
    train_artifact,
)
from tests.training.factories import DatasetSnapshotFactory, ModelTypeFactory
from training.datasets import create_snapshot, ready_twin, same_content
from training.models import DatasetSnapshot, ModelType, TrainingJob
from training.ranges import snapshot_training_ranges, training_ranges

pytestmark = pytest.mark.django_db

BASE = "/api/v1/model-types/diagnosis"


@pytest.fixture
def respiratory() -> DataDictionary:
    dictionary = current_dictionary("respiratory")
    assert dictionary is not None
    return dictionary


def new_version_of(dictionary: DataDictionary, *, by: Any = None) -> DataDictionary:
    """The next published version of ``dictionary``'s cohort, with one more finding (``lactate``)."""
    definition = json.loads(json.dumps(dictionary.definition))
    definition["findings"].append(
        {
            "key": "lactate",
            "display_name": "Lactate",
            "unit": "mmol/L",
            "value_type": "number",
            "hard_limits": {"min": 0, "max": 50},
            "expected_range": {"min": 0.2, "max": 20},
            "used_by_model": False,
        }
    )
    draft = dictionary.copy(by=by)
    draft.edit(definition, by=by)
    draft.publish(by=by)
    return draft


def numpy_ranges(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The reference: numpy's min and max of each numeric input over ``rows``."""
    expected = {"age": np.array([row["age"] for row in rows], dtype=float)}
    for key in sorted({key for row in rows for key in row["findings"]}):
        expected[f"findings.{key}"] = np.array([row["findings"][key] for row in rows if key in row["findings"]])
    return {name: {"min": float(np.min(values)), "max": float(np.max(values))} for name, values in expected.items()}


# --- Snapshots -------------------------------------------------------------------------------------


def test_a_build_records_the_cohorts_current_dictionary_version():
    model_type: ModelType = ModelTypeFactory.create()
    dictionary = published_dictionary(model_type.cohort)

    snapshot: DatasetSnapshot = DatasetSnapshotFactory(model_type=model_type, built=True)  # type: ignore[assignment]

    assert snapshot.status == DatasetSnapshot.Status.READY
    assert snapshot.dictionary == dictionary


def test_a_build_of_a_cohort_without_a_published_dictionary_records_none():
    snapshot: DatasetSnapshot = DatasetSnapshotFactory(built=True)  # type: ignore[assignment]

    assert (snapshot.status, snapshot.dictionary) == (DatasetSnapshot.Status.READY, None)


def test_a_ready_snapshot_keeps_its_version_and_is_no_twin_under_a_newer_one():
    model_type: ModelType = ModelTypeFactory.create()
    first = published_dictionary(model_type.cohort)
    snapshot: DatasetSnapshot = DatasetSnapshotFactory(model_type=model_type, built=True)  # type: ignore[assignment]
    creator = snapshot.created_by
    assert creator is not None
    request = create_snapshot(model_type, by=creator)
    assert ready_twin(request, by=creator) == snapshot
    assert same_content(model_type, snapshot.content_hash) == snapshot

    second = new_version_of(first)

    snapshot.refresh_from_db()
    assert snapshot.dictionary == first
    assert ready_twin(request, by=creator) is None  # the same cases under v2 are another dataset
    assert same_content(model_type, snapshot.content_hash) is None
    assert second.version == 2


def test_a_ready_snapshots_dictionary_cannot_change(respiratory):
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=None)
    snapshot.dictionary = respiratory
    with pytest.raises(Exception, match="dictionary_id cannot change"):
        snapshot.save()


# --- Immutability once referred to -----------------------------------------------------------------


def test_a_draft_referred_to_by_a_snapshot_cannot_be_edited(make_user):
    lead = make_user("clinical_lead")
    model_type: ModelType = ModelTypeFactory.create()
    cohort = published_dictionary(model_type.cohort).cohort
    draft = DataDictionary.create_draft(cohort, small_definition(), by=lead)
    assert draft.can_edit()
    snapshot = ready_snapshot(model_type, by=lead)
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(dictionary=draft)

    assert draft.references() == ["dataset snapshots"]
    assert draft.is_referenced()
    assert not draft.can_edit()
    with pytest.raises(TransitionError, match="dataset snapshots"):
        draft.edit(small_definition(demographics={"age": False, "sex": False}), by=lead)


def test_a_draft_referred_to_by_a_model_version_cannot_be_edited(make_user, engineer):
    lead = make_user("clinical_lead")
    cohort = published_dictionary("lineage-small").cohort
    draft = DataDictionary.create_draft(cohort, small_definition(), by=lead)
    version = ModelVersionFactory.create(
        trained=True, dataset=ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer), created_by=engineer
    )
    ModelVersion.objects.filter(pk=version.pk).update(dictionary=draft)

    assert draft.references() == ["model versions"]
    with pytest.raises(TransitionError, match="model versions"):
        draft.edit(small_definition(demographics={"age": False, "sex": False}), by=lead)


def test_nothing_refers_to_a_fresh_draft(make_user):
    draft = DataDictionary.create_draft(
        published_dictionary("lineage-free").cohort, small_definition(), by=make_user("clinical_lead")
    )
    assert (draft.references(), draft.is_referenced()) == ([], False)


# --- Versions --------------------------------------------------------------------------------------


def test_a_version_trained_on_a_snapshot_inherits_its_dictionary_version(engineer, respiratory):
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer)
    older = published_dictionary("lineage-older")  # any published version other than the current one
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(dictionary=older)
    snapshot.refresh_from_db()

    version = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)

    assert version.dictionary == older != respiratory


def test_a_version_whose_snapshot_recorded_none_gets_the_cohorts_current_version(engineer, respiratory):
    version = ModelVersionFactory.create(
        trained=True, dataset=ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer), created_by=engineer
    )

    assert version.dataset is not None
    assert version.dataset.dictionary is None
    assert version.dictionary == respiratory


def test_a_version_of_a_cohort_without_a_dictionary_records_none(engineer):
    model_type = ModelTypeFactory.create(slug="undictionaried", cohort="no-dictionary-yet")
    version = ModelVersionFactory.create(
        trained=True, dataset=ready_snapshot(model_type, by=engineer), created_by=engineer
    )

    assert version.dictionary is None


def test_the_worker_records_the_train_splits_ranges_equal_to_numpys(engineer):
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer)
    train = snapshot_rows(snapshot)["train"]

    version = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)

    expected = numpy_ranges(train)
    assert set(expected) == {"age", "findings.spo2", "findings.temperature_c"}
    assert version.training_ranges == expected
    assert version.job is not None
    assert version.job.training_ranges == expected
    # Not the whole snapshot's: the test split reaches further.
    everything = numpy_ranges([row for rows in snapshot_rows(snapshot).values() for row in rows])
    assert everything != expected


def test_training_ranges_leave_out_missing_values_and_unseen_inputs():
    rows = [
        {"age": 30, "findings": {"spo2": 91.0}, "symptoms": [], "label": "a"},
        {"age": None, "findings": {"spo2": 97.5, "crp": float("nan")}, "symptoms": [], "label": "b"},
        {"age": 70, "findings": {}, "symptoms": [], "label": "a"},
    ]
    from training.features import columns_of

    ranges = training_ranges(columns_of(rows), ["age", "finding:crp", "finding:spo2", "finding:wbc"])

    assert ranges == {"age": {"min": 30.0, "max": 70.0}, "findings.spo2": {"min": 91.0, "max": 97.5}}


def test_an_upload_records_its_snapshots_dictionary_and_train_split_ranges(engineer, respiratory):
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer)
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(dictionary=respiratory)
    snapshot.refresh_from_db()
    job = external_completed_job(snapshot, by=engineer)
    body = {"job": job.pk, "artifact": SimpleUploadedFile("model.skops", artifact_bytes(train_artifact(snapshot)))}

    response = jwt_client(engineer).post(f"{BASE}/versions/upload/", body, format="multipart")

    assert response.status_code == 201, response.json()
    version = ModelVersion.objects.get(job=job)
    assert version.dictionary == respiratory
    assert version.training_ranges == numpy_ranges(snapshot_rows(snapshot)["train"])
    assert version.training_ranges == snapshot_training_ranges(snapshot)
    assert response.json()["dictionary"] == {"cohort": "respiratory", "version": respiratory.version}


def test_an_uploads_ranges_leave_out_the_inputs_its_dictionary_says_models_do_not_use(engineer, respiratory):
    # As the worker trains: a cohort whose models leave age (or a finding) out gets no range for it,
    # so predict never warns about an input the model does not read.
    definition = json.loads(json.dumps(respiratory.definition))
    definition["demographics"]["age"] = False
    unused = next(item for item in definition["findings"] if item.get("used_by_model", True))
    unused["used_by_model"] = False
    draft = respiratory.copy(by=engineer)
    draft.edit(definition, by=engineer)
    draft.publish(by=engineer)
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer)
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(dictionary=draft)
    snapshot.refresh_from_db()

    ranges = snapshot_training_ranges(snapshot)

    expected = numpy_ranges(snapshot_rows(snapshot)["train"])
    assert "age" in expected  # measured without the rule
    assert f"findings.{unused['key']}" in expected
    assert "age" not in ranges
    assert f"findings.{unused['key']}" not in ranges
    assert ranges == {
        name: bounds for name, bounds in expected.items() if name not in ("age", f"findings.{unused['key']}")
    }


# --- API and admin ---------------------------------------------------------------------------------


def test_the_api_shows_the_dictionary_version_of_snapshots_and_versions(engineer, respiratory):
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer)
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(dictionary=respiratory)
    version = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)
    client = jwt_client(engineer)
    expected = {"cohort": "respiratory", "version": respiratory.version}

    listed = client.get("/api/v1/datasets/").json()["results"]
    detail = client.get(f"/api/v1/datasets/{snapshot.pk}/").json()
    versions = client.get(f"{BASE}/versions/").json()["results"]
    version_detail = client.get(f"{BASE}/versions/{version.version}/").json()

    assert [item["dictionary"] for item in listed if item["id"] == snapshot.pk] == [expected]
    assert detail["dictionary"] == expected
    assert [item["dictionary"] for item in versions] == [expected]
    assert version_detail["dictionary"] == expected
    assert version_detail["training_ranges"] == version.training_ranges
    assert set(version_detail["training_ranges"]) == {"age", "findings.spo2", "findings.temperature_c"}


def test_the_api_shows_null_for_a_snapshot_without_one(engineer):
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer)

    assert jwt_client(engineer).get(f"/api/v1/datasets/{snapshot.pk}/").json()["dictionary"] is None


def test_the_admin_pages_show_the_dictionary_version_and_the_training_ranges(admin_client, engineer, respiratory):
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer)
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(dictionary=respiratory)
    version = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)

    snapshot_page = admin_client.get(f"/admin/training/datasetsnapshot/{snapshot.pk}/change/").content.decode()
    version_page = admin_client.get(f"/admin/models_registry/modelversion/{version.pk}/change/").content.decode()

    assert f"respiratory v{respiratory.version} (published)" in snapshot_page
    assert f"respiratory v{respiratory.version} (published)" in version_page
    assert 'class="training-ranges"' in version_page
    assert "Oxygen saturation" in version_page  # the dictionary's display name of findings.spo2


# --- The back-fill migrations ----------------------------------------------------------------------

training_migration = importlib.import_module("training.migrations.0006_dictionary_lineage")
registry_migration = importlib.import_module("models_registry.migrations.0011_dictionary_lineage")


def test_the_migration_gives_a_snapshot_the_version_all_its_cases_share_else_none(engineer, respiratory):
    from tests.cases.factories import CaseFactory

    shared = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer, first_id=1)
    mixed = ready_snapshot(ModelTypeFactory.create(slug="other", cohort="respiratory"), by=engineer, first_id=1001)
    cases: list[Case] = [CaseFactory() for _ in range(4)]  # type: ignore[misc]
    Case.objects.filter(pk__in=[case.pk for case in cases]).update(dictionary=respiratory)
    Case.objects.filter(pk=cases[3].pk).update(dictionary=None)  # a case the check flagged
    # Their manifests name these cases (an UPDATE: a ready snapshot's save refuses the change).
    DatasetSnapshot.objects.filter(pk=shared.pk).update(manifest={"train": [cases[0].pk], "test": [cases[1].pk]})
    DatasetSnapshot.objects.filter(pk=mixed.pk).update(manifest={"train": [cases[2].pk], "test": [cases[3].pk]})

    training_migration.record_snapshot_dictionaries(apps, None)

    shared.refresh_from_db()
    mixed.refresh_from_db()
    assert (shared.dictionary, mixed.dictionary) == (respiratory, None)


def test_the_migration_gives_a_version_its_snapshots_version_else_the_cohorts_current(engineer, respiratory):
    older = published_dictionary("lineage-older")
    on_snapshot = ModelVersionFactory.create(
        trained=True, dataset=ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer), created_by=engineer
    )
    without = ModelVersionFactory.create(
        trained=True,
        dataset=ready_snapshot(ModelTypeFactory.create(slug="other", cohort="respiratory"), by=engineer, first_id=1001),
        created_by=engineer,
    )
    undictionaried = ModelVersionFactory.create(
        trained=True,
        dataset=ready_snapshot(
            ModelTypeFactory.create(slug="none", cohort="no-dictionary-yet"), by=engineer, first_id=2001
        ),
        created_by=engineer,
    )
    assert on_snapshot.dataset is not None
    DatasetSnapshot.objects.filter(pk=on_snapshot.dataset.pk).update(dictionary=older)
    ModelVersion.objects.update(dictionary=None)  # as before the migration

    registry_migration.record_version_dictionaries(apps, None)

    found = dict(ModelVersion.objects.values_list("pk", "dictionary"))
    assert found == {on_snapshot.pk: older.pk, without.pk: respiratory.pk, undictionaried.pk: None}


def test_registration_is_idempotent_and_keeps_the_recorded_version(engineer, respiratory):
    snapshot = ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer)
    version = ModelVersionFactory.create(trained=True, dataset=snapshot, created_by=engineer)
    new_version_of(respiratory)

    assert version.job is not None
    register_completed_job(sender=TrainingJob, job_id=version.job.pk)

    assert ModelVersion.objects.get(pk=version.pk).dictionary == respiratory
