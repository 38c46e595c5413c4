"""Read-only inlines for the Django admin: the audit trail of a row, and other records it only shows.

An audit trail is append-only: the inline offers no add, change or delete, and whoever may view the
parent may view its trail when ``parent_view_permission`` is set (the roles do not list the audit
model of every table). Each app subclasses ``AuditTrailInline`` with its transition model::

    class JobTransitionInline(AuditTrailInline):
        model = JobTransition
        parent_view_permission = "training.view_trainingjob"
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

# The columns every transition model has (``learning_engine.audit.AuditEntry``).
AUDIT_FIELDS: tuple[str, ...] = ("created_at", "actor", "from_state", "to_state", "reason")


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent, never added, changed or deleted here."""

    extra = 0
    max_num = 0
    can_delete = False
    # A permission (``app_label.codename``) that also lets a user view these rows; empty: only the
    # inline model's own view permission does.
    parent_view_permission = ""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if self.parent_view_permission and request.user.has_perm(self.parent_view_permission):
            return True
        return super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditTrailInline(ReadOnlyInline):
    """An audit trail: a transition model's rows, oldest first, with their actors."""

    fields = AUDIT_FIELDS
    readonly_fields = AUDIT_FIELDS
    ordering = ("created_at", "id")
    verbose_name: str | None = "audit entry"
    verbose_name_plural = "audit trail"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("actor")
