"""Query filters of the case list (and of the statistics, which take the same parameters).

Every parameter is validated: a bad value is a 400 with a ``code``, never a 500 and never a
silently ignored filter that returns the wrong rows.

Two filters narrow by an identifier and are therefore only for users with ``cases.view_phi``:
``search`` (on ``external_id``, an encounter number) and the exact encounter-date range
(``encounter_after`` / ``encounter_before``: under Safe Harbor a date finer than the year is an
identifier, and a day-wide range would reveal it). Everyone else may filter by ``encounter_year``.
For the same reason, ordering by ``external_id`` or ``encounter_date`` is for PHI users only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.filters import SearchFilter
from rest_framework.request import Request

from cases.models import Case
from learning_engine.filters import CreatedDateFilterSet, StrictOrderingFilter
from learning_engine.permissions import can_view_phi

PHI_FILTERS = ("encounter_after", "encounter_before")


class UpperCaseCharFilter(django_filters.CharFilter):
    """Diagnosis codes are stored upper-case (``parse_record`` normalises them); so is the query."""

    def filter(self, qs: QuerySet, value: Any) -> QuerySet:
        return super().filter(qs, value.strip().upper() if isinstance(value, str) else value)


@extend_schema_field(OpenApiTypes.INT)
class IntegerFilter(django_filters.NumberFilter):
    # NumberFilter cleans to a Decimal, which the ``year`` lookup cannot take.
    field_class = forms.IntegerField


class CaseFilter(CreatedDateFilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=Case.Status.choices, help_text="One or more statuses (repeat the parameter)."
    )
    cohort = django_filters.CharFilter(max_length=100, help_text="Exact cohort name.")
    diagnosis_code = UpperCaseCharFilter(max_length=20, help_text="Diagnosis code (case-insensitive).")
    min_quality = django_filters.NumberFilter(
        field_name="quality_score",
        lookup_expr="gte",
        min_value=0,
        max_value=1,
        help_text="Only cases whose quality score is at least this (0..1).",
    )
    encounter_year = IntegerFilter(
        field_name="encounter_date", lookup_expr="year", min_value=1900, max_value=2200, help_text="Encounter year."
    )
    encounter_after = django_filters.DateFilter(
        field_name="encounter_date",
        lookup_expr="gte",
        help_text="Encounter on or after this date (YYYY-MM-DD). Needs the PHI permission.",
    )
    encounter_before = django_filters.DateFilter(
        field_name="encounter_date",
        lookup_expr="lte",
        help_text="Encounter on or before this date (YYYY-MM-DD). Needs the PHI permission.",
    )

    class Meta:
        model = Case
        fields: list[str] = []

    def is_valid(self) -> bool:
        valid = super().is_valid()
        if not can_view_phi(getattr(self.request, "user", None)):
            for name in PHI_FILTERS:
                if self.data.get(name) not in (None, ""):
                    self.form.add_error(
                        name, "Filtering by exact encounter date needs the PHI permission; use encounter_year."
                    )
                    valid = False
        return self.range_is_forward("encounter_after", "encounter_before") and valid


class CaseSearchFilter(SearchFilter):
    """``?search=`` on ``external_id``: only for PHI users (an encounter number is an identifier)."""

    def get_search_fields(self, view: Any, request: Request) -> Any:
        return super().get_search_fields(view, request) if can_view_phi(request.user) else None

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        if not can_view_phi(request.user) and request.query_params.get(self.search_param, "").strip():
            raise serializers.ValidationError(
                {self.search_param: ["Searching by external id needs the PHI permission."]}
            )
        return super().filter_queryset(request, queryset, view)

    def to_html(self, request: Request, queryset: QuerySet, view: Any) -> str:
        return super().to_html(request, queryset, view) if can_view_phi(request.user) else ""


class CaseOrderingFilter(StrictOrderingFilter):
    """Strict ordering, and fields that would sort by an identifier only for PHI users."""

    phi_only_fields = frozenset({"external_id", "encounter_date"})

    def get_valid_fields(
        self, queryset: QuerySet, view: Any, context: Mapping[str, Any] | None = None
    ) -> list[tuple[str, Any]]:
        fields = super().get_valid_fields(queryset, view, context)
        request = (context or {}).get("request")
        if request is not None and not can_view_phi(request.user):
            fields = [item for item in fields if item[0] not in self.phi_only_fields]
        return fields
