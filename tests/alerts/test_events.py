"""alerts.events.emit: the row is written on commit, and only de-identified data gets in."""

from __future__ import annotations

import math
import uuid
from typing import Any

import numpy as np
import pytest
from django.db import transaction

from alerts.deidentified import AlertDataError
from alerts.events import EventType, emit
from alerts.models import AlertEvent
from learning_engine.audit import AppendOnlyError
from tests.cases.phi_examples import PATIENT

pytestmark = pytest.mark.django_db


def emit_job_failed(**overrides):
    arguments: dict[str, Any] = {"model_type": "diagnosis", "summary": "Training job 12 failed", "data": {"job": 12}}
    arguments.update(overrides)
    emit(EventType.JOB_FAILED, **arguments)


def test_emit_records_the_event_when_the_transaction_commits(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        emit_job_failed(data={"job": 12, "error_code": "training_error", "accuracy": np.float64(0.25)})
        assert not AlertEvent.objects.exists()
    assert len(callbacks) == 1
    event = AlertEvent.objects.get()
    assert event.event_type == "job.failed"
    assert event.model_type == "diagnosis"
    assert event.summary == "Training job 12 failed"
    assert event.data == {"job": 12, "error_code": "training_error", "accuracy": 0.25}
    assert isinstance(event.event_id, uuid.UUID)


def test_an_event_of_a_change_that_rolls_back_is_never_recorded(django_capture_on_commit_callbacks):
    def failing_change():
        with transaction.atomic():
            emit_job_failed()
            raise RuntimeError("the change failed")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        failing_change()
    assert not AlertEvent.objects.exists()


def test_model_type_may_be_given_as_anything_with_a_slug(django_capture_on_commit_callbacks):
    class ModelType:
        slug = "breast-mass"

    with django_capture_on_commit_callbacks(execute=True):
        emit(EventType.ABTEST_DECIDED, model_type=ModelType(), summary="A/B test 3 decided ship_b", data={})
        emit(EventType.DRIFT_DETECTED, summary="Drift", data={})
    assert sorted(AlertEvent.objects.values_list("model_type", flat=True)) == ["", "breast-mass"]


def test_every_event_type_of_the_issue_exists():
    assert set(EventType.values) - {"alert.test"} == {
        "drift.detected",
        "version.degraded",
        "job.failed",
        "abtest.decided",
        "promotion.proposed",
        "rollback.proposed",
        "version.rolled_back",
    }


def test_an_unknown_event_type_is_refused():
    with pytest.raises(AlertDataError, match="Unknown event type"):
        emit("job.exploded", summary="x", data={})


def test_events_are_append_only(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        emit_job_failed()
    event = AlertEvent.objects.get()
    event.summary = "changed"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        AlertEvent.objects.all().delete()


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"patient_name": "x"}, "names patient data"),
        ({"name": "x"}, "names patient data"),
        ({"mrn": 7717702}, "names patient data"),
        ({"feature": {"birth_date": 1}}, "names patient data"),
        ({"job id": 1}, "Key 0 of data"),
        ({"ok": 1, PATIENT["mrn"]: 1}, "Key 1 of data"),
        ({"Patient-Name": 1}, "names patient data"),
        ({"note": "x"}, "names patient data"),
        ({"label": PATIENT["name"]}, 'data["label"]'),
        ({"label": PATIENT["mrn"]}, 'data["label"]'),
        ({"label": PATIENT["birth_date"]}, 'data["label"]'),
        ({"label": PATIENT["phone"]}, 'data["label"]'),
        ({"label": PATIENT["address"]}, 'data["label"]'),
        ({"label": "john.doe@example.org"}, 'data["label"]'),
        ({"labels": ["ok", "Fever since Monday, wife Maria at bedside"]}, 'data["labels"][1]'),
        ({"label": "x" * 101}, 'data["label"]'),
        ({"psi": math.nan}, "finite"),
        ({"psi": math.inf}, "finite"),
        ({"blob": b"bytes"}, "must be a number"),
        ({"a": {"b": {"c": {"d": [1]}}}}, "nested deeper"),
        ({"many": list(range(1001))}, "more than 1000 items"),
    ],
)
def test_data_that_could_carry_patient_data_is_refused_without_echoing_it(data, where):
    with pytest.raises(AlertDataError) as refused:
        emit_job_failed(data=data)
    message = str(refused.value)
    assert where in message
    for value in PATIENT.values():
        assert value not in message
    assert "Maria" not in message


@pytest.mark.parametrize("summary", ["", "   ", None, 42])
def test_a_summary_that_is_not_text_is_refused(summary):
    with pytest.raises(AlertDataError, match="summary"):
        emit_job_failed(summary=summary)


@pytest.mark.parametrize(
    ("summary", "stored"),
    [
        ("Job failed\nfor version 3", "Job failed for version 3"),
        ("Job failed for john.doe@example.org today", "Job failed for [address] today"),
        (f"Job failed for {PATIENT['mrn']}", "Job failed for MRN-[number]"),
        (f"Version retrained {PATIENT['birth_date']}", "Version retrained [number]"),
        (f"Call {PATIENT['phone']}", "Call [number]"),
        ("Call (617) 555-0100", "Call (617) [number]"),
        ("Version v2#beta {x}", "Version v2?beta ?x?"),
        ("Accuracy 0.74 (0.71 to 0.79) below 0.80 - 0.02", "Accuracy 0.74 (0.71 to 0.79) below 0.80 - 0.02"),
        ("x" * 250, "x" * 197 + "..."),
    ],
)
def test_a_summary_is_made_safe_rather_than_refused(django_capture_on_commit_callbacks, summary, stored):
    """Callers build summaries from labels they do not control: an alert must still be raised."""
    with django_capture_on_commit_callbacks(execute=True):
        emit_job_failed(summary=summary)
    assert AlertEvent.objects.get().summary == stored


def test_ids_slugs_figures_and_uuids_are_accepted(django_capture_on_commit_callbacks):
    version_uuid = uuid.uuid4()
    data = {
        "version": 41,
        "champion": 40,
        "feature": "findings.temperature",
        "psi": 0.31,
        "shares": {"J18_9": 0.4, "J06_9": 0.6},
        "arms": ["a", "b"],
        "decided": True,
        "interval": [0.71, 0.79],
        "missing": None,
        "lease": version_uuid,
        "lease_text": str(version_uuid),
        "count": np.int64(5000000),
    }
    with django_capture_on_commit_callbacks(execute=True):
        emit(
            EventType.VERSION_DEGRADED,
            model_type="diagnosis",
            summary="Version 41 degraded: live accuracy 0.74 (0.71 to 0.79) below 0.80 - 0.02",
            data=data,
        )
    stored = AlertEvent.objects.get().data
    assert stored["lease"] == stored["lease_text"] == str(version_uuid)
    assert stored["count"] == 5000000
    assert stored["shares"] == {"J18_9": 0.4, "J06_9": 0.6}


def test_a_model_type_that_is_not_a_slug_is_refused():
    with pytest.raises(AlertDataError, match="model_type"):
        emit_job_failed(model_type="John Doe")
