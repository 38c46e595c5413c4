"""The PHI access log in the admin: read-only, for privacy officers (``cases.view_accesslogentry``).

Filterable by user, action, channel, date (and the date hierarchy) and case id. Nobody adds, changes
or deletes an entry here; the tables are append-only below the admin too.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from cases.access_log import AccessLogEntry
from learning_engine.admin_links import RelatedLinksMixin, is_id_sized

MAX_SHOWN_CASE_IDS = 1000


class CaseIdFilter(admin.SimpleListFilter):
    """A case id typed into a box: the entries that touched that case."""

    title = "case id"
    parameter_name = "case"
    template = "admin/input_filter.html"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("", "")]  # never listed: the template is a text box

    def choices(self, changelist: Any) -> Any:
        # Only the "all" choice, whose query string the template keeps as hidden inputs.
        query_parts = [
            (key, value)
            for key, values in changelist.params.items()
            if key != self.parameter_name
            for value in (values if isinstance(values, list) else [values])
        ]
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "query_parts": query_parts,
            "display": "All",
        }

    def queryset(self, request: HttpRequest, queryset: QuerySet[AccessLogEntry]) -> QuerySet[AccessLogEntry]:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        if not value.isdecimal() or not is_id_sized(value):
            # A case id is a number an id column holds; anything else matches nothing rather than a
            # 500 (25 digits raised OverflowError in SQLite's driver).
            return queryset.none()
        return queryset.filter(accessed_cases__case_id=int(value))


@admin.register(AccessLogEntry)
class AccessLogEntryAdmin(RelatedLinksMixin, admin.ModelAdmin):
    list_display = ("created_at", "actor", "action", "channel", "case_count", "address", "target", "path")
    list_filter = (
        CaseIdFilter,
        ("actor", admin.RelatedOnlyFieldListFilter),
        "action",
        "channel",
        "created_at",
    )
    list_select_related = ("actor",)
    date_hierarchy = "created_at"
    list_per_page = 100
    show_full_result_count = False  # a count over millions of rows on every page is not worth it
    fields = (
        "created_at",
        "actor",
        "action",
        "channel",
        "address",
        "remote_addr",
        "path",
        "target",
        "fields",
        "case_count",
        "cases",
    )
    readonly_fields = fields

    @admin.display(description="case ids")
    def cases(self, obj: AccessLogEntry) -> str:
        ids = list(obj.accessed_cases.order_by("case_id").values_list("case_id", flat=True)[: MAX_SHOWN_CASE_IDS + 1])
        shown = ", ".join(str(pk) for pk in ids[:MAX_SHOWN_CASE_IDS])
        if len(ids) > MAX_SHOWN_CASE_IDS:
            return format_html("{} and {} more", shown, obj.case_count - MAX_SHOWN_CASE_IDS)
        return shown or "none"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
