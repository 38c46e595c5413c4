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
