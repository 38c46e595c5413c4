"""The log's INSERTs through SQLite's own connection (``learning_engine.bulk_insert``): the same
rows as through Django's cursor wrapper, Django's errors, and the wrapper's path whenever someone
looks at the queries."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.sessions.models import Session
from django.db import IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from learning_engine import bulk_insert
from models_registry.serving.models import Prediction
from monitoring.models import InputTally
from tests.models_registry.serving.test_feedback import PNEUMONIA_FEATURES, PREDICT

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]
sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="the driver's path is SQLite's")

SESSION_COLUMNS = ("session_key", "session_data", "expire_date")
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def driver_calls(monkeypatch):
    calls: list[str] = []
    original = bulk_insert._insert_one

    def spy(connection, plan, row, *, returning):
        calls.append(plan.head.split()[2])
        return original(connection, plan, row, returning=returning)

    monkeypatch.setattr(bulk_insert, "_insert_one", spy)
    return calls


def stored(model, pk):
    row = model.objects.filter(pk=pk).values().get()
    return {key: value for key, value in row.items() if key not in ("id", "created_at", "latency_ms")}


@sqlite_only
def test_a_predict_writes_the_same_rows_through_the_driver_as_through_the_wrapper(
    client, version, driver_calls, monkeypatch
):
    first = client.post(PREDICT, PNEUMONIA_FEATURES, format="json")
    assert first.status_code == 200
    assert driver_calls == ['"models_registry_prediction"', '"monitoring_inputtally"']
    tally = InputTally.objects.latest("id").pk
    monkeypatch.setattr(bulk_insert, "_driver_path", lambda connection: False)
    second = client.post(PREDICT, PNEUMONIA_FEATURES, format="json")
    assert second.status_code == 200
    assert len(driver_calls) == 2  # the wrapper's path this time
    assert stored(Prediction, first.json()["id"]) == stored(Prediction, second.json()["id"])
    assert stored(InputTally, tally) == stored(InputTally, InputTally.objects.latest("id").pk)


@sqlite_only
def test_a_duplicate_row_raises_djangos_integrity_error_and_a_broken_transaction_is_refused(driver_calls):
    row = [("k" * 32, "data", LATER)]
    with transaction.atomic():
        bulk_insert.insert_rows(Session, SESSION_COLUMNS, row, using="default", returning=False)
        with pytest.raises(IntegrityError), transaction.atomic():
            bulk_insert.insert_rows(Session, SESSION_COLUMNS, row, using="default", returning=False)
        assert len(driver_calls) == 2
        transaction.set_rollback(True)
        with pytest.raises(TransactionManagementError):
            bulk_insert.insert_rows(
                Session, SESSION_COLUMNS, [("j" * 32, "d", LATER)], using="default", returning=False
            )


def test_queries_being_captured_take_the_wrappers_path(driver_calls):
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        bulk_insert.insert_rows(Session, SESSION_COLUMNS, [("m" * 32, "data", LATER)], using="default", returning=False)
    assert driver_calls == []
    assert any("INSERT INTO" in query["sql"] for query in captured.captured_queries)
