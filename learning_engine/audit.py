"""The audit base: append-only rows, and one row per state change (who, from, to, why, when)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class AppendOnlyError(Exception):
    pass


class AppendOnlyQuerySet(models.QuerySet[Any]):
    """Bulk writes would bypass ``save``/``delete`` on the model: refuse them here as well."""

    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only.")

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only.")

    delete.queryset_only = True  # type: ignore[attr-defined]  # as Django's own: not on the manager


class AppendOnlyModel(models.Model):
    """Abstract. Rows are append-only through the ORM: saving an existing row, deleting one, and
    bulk ``update``/``delete`` on a queryset raise ``AppendOnlyError`` (inserts, ``bulk_create``
    included, are allowed). A raw SQL statement can still change them; the database user of a
    hardened site should lack UPDATE/DELETE on these tables.
    """

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only.")


class AuditEntry(AppendOnlyModel):
    """Abstract. Concrete audit tables add the foreign key to what changed (append-only, see
    ``AppendOnlyModel``).
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who made the change; empty for the system (workers, the reaper).",
    )
    from_state = models.CharField(max_length=32, blank=True)
    to_state = models.CharField(max_length=32)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        abstract = True
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state or '-'} -> {self.to_state}"
