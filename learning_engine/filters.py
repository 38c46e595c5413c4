"""Filter backends and filter sets shared by every API."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import django_filters
from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request


class StrictOrderingFilter(OrderingFilter):
    """``?ordering=``: an unknown field is a 400 (DRF would ignore it), and the id breaks ties so
    that pages never overlap."""

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


def _created_date_filter(verb: str, bound: str) -> django_filters.DateFilter:
    """``created_after`` / ``created_before``: a whole day, inclusive, on the row's ``created_at``."""
    return django_filters.DateFilter(
        field_name="created_at",
        lookup_expr="date__gte" if bound == "after" else "date__lte",
        help_text=f"{verb} on or {bound} this date (YYYY-MM-DD).",
    )


class CreatedDateFilterSet(django_filters.FilterSet):
    """Base of a list's filter set: ``?created_after=`` and ``?created_before=`` (a bad date is a 400).

    Subclasses declare their own filters and ``Meta`` (``model``, ``fields = []``); these two stay
    after them (in the browsable API's filter form and in the order of a 400's errors).
    """

    created_after = _created_date_filter("Created", "after")
    created_before = _created_date_filter("Created", "before")

    def is_valid(self) -> bool:
        """A range whose start is after its end is a 400 beside ``created_before`` (it would match
        nothing and read as "no rows")."""
        valid = bool(super().is_valid())
        return self.range_is_forward("created_after", "created_before") and valid

    def range_is_forward(self, after_name: str, before_name: str) -> bool:
        """False, with a form error beside ``before_name``, when both bounds are given and the
        start is after the end (subclasses check their own date ranges with it)."""
        cleaned = getattr(self.form, "cleaned_data", {})
        after, before = cleaned.get(after_name), cleaned.get(before_name)
        if after and before and after > before:
            self.form.add_error(before_name, f"Must not be before {after_name}.")
            return False
        return True

    @classmethod
    def get_filters(cls) -> Any:
        filters = super().get_filters()
        for name in ("created_after", "created_before"):
            if name in filters:
                filters[name] = filters.pop(name)
        return filters


class RegisteredDateFilterSet(CreatedDateFilterSet):
    """The same two filters, worded for rows whose creation is a registration (model versions)."""

    created_after = _created_date_filter("Registered", "after")
    created_before = _created_date_filter("Registered", "before")
