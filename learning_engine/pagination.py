"""One pagination for every list: page numbers, a client-chosen size, a hard cap."""

from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import PageNumberPagination


class CappedPageNumberPagination(PageNumberPagination):
    page_size_query_param = "page_size"

    @property
    def max_page_size(self) -> int:  # type: ignore[override]
        return int(settings.MAX_PAGE_SIZE)
