"""The created-date filters every list shares (``learning_engine.filters.CreatedDateFilterSet``)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from cases.filters import CaseFilter
from cases.models import Case
from learning_engine.filters import CreatedDateFilterSet
from models_registry.registry.filters import ModelVersionFilter
from tests.cases.factories import CaseFactory
from training.filters import DatasetSnapshotFilter, TrainingJobFilter

FILTER_SETS = [
    (CaseFilter, "Created"),
    (DatasetSnapshotFilter, "Created"),
    (TrainingJobFilter, "Created"),
    (ModelVersionFilter, "Registered"),
]


@pytest.mark.parametrize(("filterset", "verb"), FILTER_SETS, ids=[f.__name__ for f, _ in FILTER_SETS])
def test_each_list_takes_the_shared_created_date_filters_last(filterset, verb):
    assert issubclass(filterset, CreatedDateFilterSet)
    assert list(filterset.base_filters)[-2:] == ["created_after", "created_before"]
    after, before = filterset.base_filters["created_after"], filterset.base_filters["created_before"]
    assert (after.field_name, after.lookup_expr) == ("created_at", "date__gte")
    assert (before.field_name, before.lookup_expr) == ("created_at", "date__lte")
    assert after.extra["help_text"] == f"{verb} on or after this date (YYYY-MM-DD)."
    assert before.extra["help_text"] == f"{verb} on or before this date (YYYY-MM-DD)."


@pytest.mark.django_db
def test_the_created_date_bounds_are_whole_days_inclusive():
    case = CaseFactory.create()
    day = timezone.localdate(case.created_at)

    def matched(**data: str) -> bool:
        filterset = CaseFilter(data=data, queryset=Case.objects.all())
        assert filterset.is_valid(), filterset.errors
        return filterset.qs.filter(pk=case.pk).exists()

    assert matched(created_after=day.isoformat(), created_before=day.isoformat())
    assert not matched(created_after=(day + dt.timedelta(days=1)).isoformat())
    assert not matched(created_before=(day - dt.timedelta(days=1)).isoformat())
    assert not CaseFilter(data={"created_after": "May"}, queryset=Case.objects.all()).is_valid()


@pytest.mark.django_db
@pytest.mark.parametrize("filterset", [f for f, _ in FILTER_SETS], ids=[f.__name__ for f, _ in FILTER_SETS])
def test_a_created_range_whose_start_is_after_its_end_is_refused_beside_its_end(filterset):
    model = filterset._meta.model
    backwards = filterset(
        data={"created_after": "2026-05-02", "created_before": "2026-05-01"}, queryset=model.objects.all()
    )
    assert not backwards.is_valid()
    assert list(backwards.errors) == ["created_before"]
    assert filterset(
        data={"created_after": "2026-05-01", "created_before": "2026-05-01"}, queryset=model.objects.all()
    ).is_valid()


@pytest.mark.django_db
def test_the_api_answers_a_backwards_created_range_with_a_400_and_a_code(api_client_for):
    response = api_client_for("clinician").get("/api/v1/cases/?created_after=2026-05-02&created_before=2026-05-01")
    assert response.status_code == 400
    body = response.json()
    assert "code" in body
    assert "created_before" in str(body)
