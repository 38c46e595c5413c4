"""Query filters of the dataset and training-job lists.

Every parameter is validated: a bad value is a 400 with a ``code``, never a 500 and never a
silently ignored filter that returns the wrong rows. A model type is named by its slug and an
unknown slug is a 400 (a typo should not look like "no jobs"); a creator is named by username.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import django_filters
from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from training.models import DatasetSnapshot, ModelType, TrainingJob


def _model_type_filter() -> django_filters.ModelChoiceFilter:
    return django_filters.ModelChoiceFilter(
        field_name="model_type",
        to_field_name="slug",
        queryset=ModelType.objects.all(),
        help_text="Model type slug.",
    )


class DatasetSnapshotFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=DatasetSnapshot.Status.choices, help_text="One or more statuses (repeat the parameter)."
    )
    model_type = _model_type_filter()
    created_by = django_filters.CharFilter(
        field_name="created_by__username", max_length=150, help_text="Username of the creator."
    )
    created_after = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", help_text="Created on or after this date (YYYY-MM-DD)."
    )
    created_before = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__lte", help_text="Created on or before this date (YYYY-MM-DD)."
    )

    class Meta:
        model = DatasetSnapshot
        fields: list[str] = []


class TrainingJobFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=TrainingJob.Status.choices, help_text="One or more statuses (repeat the parameter)."
    )
    model_type = _model_type_filter()
    created_by = django_filters.CharFilter(
        field_name="created_by__username", max_length=150, help_text="Username of the creator."
    )
    executor = django_filters.ChoiceFilter(
        choices=TrainingJob.Executor.choices, help_text="Who runs the job: the built-in worker or an external trainer."
    )
    created_after = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", help_text="Created on or after this date (YYYY-MM-DD)."
    )
    created_before = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__lte", help_text="Created on or before this date (YYYY-MM-DD)."
    )

    class Meta:
        model = TrainingJob
        fields: list[str] = []


class StrictOrderingFilter(OrderingFilter):
    """``?ordering=``: an unknown field is a 400 (DRF would ignore it), and the id breaks ties so
    that pages never overlap. (The same rules as ``cases.filters.CaseOrderingFilter``.)"""

    def remove_invalid_fields(
        self, queryset: QuerySet, fields: Iterable[str], view: Any, request: Request
    ) -> list[str]:
        valid = {item[0] for item in self.get_valid_fields(queryset, view, {"request": request})}
        wanted = [term.strip() for term in fields if term.strip()]
        invalid = [term for term in wanted if term.removeprefix("-") not in valid]
        if invalid:
            raise serializers.ValidationError(
                {self.ordering_param: [f"Order by one or more of: {', '.join(sorted(valid))} (prefix - to reverse)."]}
            )
        return wanted

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any) -> Any:
        ordering = super().get_ordering(request, queryset, view)
        if ordering and not any(term.removeprefix("-") in {"id", "pk"} for term in ordering):
            ordering = [*ordering, "-id"]
        return ordering
