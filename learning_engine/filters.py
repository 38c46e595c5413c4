"""Filter backends shared by every API."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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
