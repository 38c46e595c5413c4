"""The audit base: rows are written once and never changed or removed through the ORM."""

from __future__ import annotations

import pytest
from django.apps import apps

from cases.models import CaseTransition
from learning_engine.audit import AppendOnlyError, AppendOnlyModel, AppendOnlyQuerySet, AuditEntry
from tests.cases.factories import CaseFactory
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

AUDIT_MODELS = [model for model in apps.get_models() if issubclass(model, AuditEntry)]
APPEND_ONLY_MODELS = [model for model in apps.get_models() if issubclass(model, AppendOnlyModel)]


@pytest.fixture
def row() -> CaseTransition:
    case = CaseFactory.create()
    return CaseTransition.objects.create(case=case, actor=UserFactory.create(), from_state="submitted", to_state="x")


def test_every_audit_table_is_append_only():
    assert CaseTransition in AUDIT_MODELS
    for model in AUDIT_MODELS:
        assert isinstance(model._default_manager.all(), AppendOnlyQuerySet), model.__name__


def test_the_audit_records_outside_the_transition_tables_share_the_append_only_base():
    labels = {model._meta.label for model in APPEND_ONLY_MODELS}
    assert {"models_registry.ArtifactRejection", "models_registry.ActivationHistory"} <= labels
    assert set(AUDIT_MODELS) <= set(APPEND_ONLY_MODELS)


@pytest.mark.parametrize("model", APPEND_ONLY_MODELS, ids=[model._meta.label for model in APPEND_ONLY_MODELS])
def test_every_append_only_model_refuses_an_update_and_a_delete(model):
    assert isinstance(model._default_manager.all(), AppendOnlyQuerySet)
    stored = model(pk=1)
    stored._state.adding = False  # as if loaded from the database; neither call reaches it
    with pytest.raises(AppendOnlyError, match="append-only"):
        stored.save()
    with pytest.raises(AppendOnlyError, match="append-only"):
        stored.delete()
    with pytest.raises(AppendOnlyError):
        model._default_manager.filter(pk=1).update(pk=2)
    with pytest.raises(AppendOnlyError):
        model._default_manager.filter(pk=1).delete()


def test_a_new_row_can_be_written_by_a_person_or_by_the_system(row):
    system = CaseTransition.objects.create(case=row.case, actor=None, from_state="x", to_state="y", reason="Reaped.")
    assert CaseTransition.objects.filter(pk__in=[row.pk, system.pk]).count() == 2
    assert system.actor is None
    assert system.created_at is not None


def test_saving_an_existing_row_again_is_refused(row):
    row.reason = "Rewritten history."
    with pytest.raises(AppendOnlyError):
        row.save()
    assert CaseTransition.objects.get(pk=row.pk).reason == ""


def test_deleting_a_row_is_refused(row):
    with pytest.raises(AppendOnlyError):
        row.delete()
    assert CaseTransition.objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize(
    "bulk_write",
    [
        lambda rows: rows.update(reason="Rewritten."),
        lambda rows: rows.delete(),
        lambda rows: CaseTransition.objects.bulk_update(list(rows), ["reason"]),
    ],
    ids=["update", "delete", "bulk_update"],
)
def test_bulk_writes_on_audit_rows_are_refused(row, bulk_write):
    rows = CaseTransition.objects.filter(pk=row.pk)
    with pytest.raises(AppendOnlyError):
        bulk_write(rows)
    assert CaseTransition.objects.filter(pk=row.pk, reason="").exists()


def test_reading_and_filtering_work_as_usual(row):
    assert list(CaseTransition.objects.filter(case=row.case).values_list("to_state", flat=True)) == ["submitted", "x"]
    assert str(row) == "submitted -> x"
    assert str(CaseTransition(from_state="", to_state="submitted")) == "- -> submitted"


def test_rows_are_ordered_by_time_of_writing(row):
    later = CaseTransition.objects.create(case=row.case, from_state="x", to_state="y")
    assert list(CaseTransition.objects.filter(case=row.case))[-2:] == [row, later]
