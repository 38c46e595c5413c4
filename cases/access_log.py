"""The PHI access log: who read or changed which patients' raw data, when, from where, and how.

One ``AccessLogEntry`` per request (or command run) that carried raw patient data to a person or
took it in, with the ids of the cases in ``AccessedCase`` rows written by one ``bulk_create``, so
a page of 100 cases costs two INSERTs, not 100. Both tables are append-only
(``learning_engine.audit.AppendOnlyModel``). The log holds ids, field names, addresses and paths,
never a patient value: the privacy officer who reads it sees no PHI. See docs/privacy.md for what
is logged and what is not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from rest_framework.throttling import BaseThrottle

from learning_engine.audit import AppendOnlyModel

ADDRESS_MAX_LENGTH = 64
PATH_MAX_LENGTH = 300
# Case rows handed to the driver at once (bounds the memory of the parameter list).
BULK_BATCH = 10_000


class AccessLogEntry(AppendOnlyModel):
    class Action(models.TextChoices):
        LIST = "list", "List"
        VIEW = "view", "View"
        SUBMIT = "submit", "Submit"
        EDIT = "edit", "Edit"
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"
        RETRACT = "retract", "Retract"
        IMPORT = "import", "Import"
        DOWNLOAD_DATASET = "download_dataset", "Download a dataset (de-identified)"

    class Channel(models.TextChoices):
        API = "api", "API"
        ADMIN = "admin", "Admin"
        COMMAND = "command", "Command"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who read the data (for a command: the user it acted as).",
    )
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(
        max_length=ADDRESS_MAX_LENGTH,
        blank=True,
        help_text="The client's address: REMOTE_ADDR, or with NUM_PROXIES trusted proxies the address they "
        "added to X-Forwarded-For. Empty for a command.",
    )
    remote_addr = models.CharField(
        max_length=ADDRESS_MAX_LENGTH, blank=True, help_text="REMOTE_ADDR as received (the nearest proxy, if any)."
    )
    path = models.CharField(
        max_length=PATH_MAX_LENGTH, blank=True, help_text="The URL path, without the query string (or the command)."
    )
    target = models.CharField(max_length=100, blank=True, help_text="What else was read, e.g. 'dataset 12'.")
    fields = models.JSONField(default=list, blank=True, help_text="For an edit: the fields changed (names only).")
    case_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "PHI access log entry"
        verbose_name_plural = "PHI access log"
        indexes = [models.Index(fields=["actor", "created_at"], name="accesslog_actor_time")]

    def __str__(self) -> str:
        who = self.actor.get_username() if self.actor_id and self.actor else "system"
        return f"{who} {self.action} {self.case_count} case(s) at {self.created_at:%Y-%m-%d %H:%M:%S}"

    def case_ids(self) -> list[int]:
        return list(self.accessed_cases.order_by("case_id").values_list("case_id", flat=True))


class AccessedCase(AppendOnlyModel):
    """One case of an entry: what makes "who read case 123?" one indexed lookup."""

    entry = models.ForeignKey(AccessLogEntry, on_delete=models.PROTECT, related_name="accessed_cases")
    # No database constraint: an audit record is written whatever it names (a dataset's manifest is
    # taken as it is) and must outlive anything; cases are never deleted, and PROTECT still stops
    # the ORM from deleting one that the log names.
    case = models.ForeignKey("cases.Case", on_delete=models.PROTECT, related_name="+", db_constraint=False)

    class Meta:
        verbose_name = "accessed case"


def client_address(request: Any) -> tuple[str, str]:
    """(client address, REMOTE_ADDR) of a Django or DRF request.

    The client address follows the throttles' rule (DRF's ``get_ident`` with ``NUM_PROXIES``):
    behind N trusted proxies it is the entry they added to ``X-Forwarded-For``, so a client cannot
    write its own; without proxies it is ``REMOTE_ADDR``.
    """
    remote = str(request.META.get("REMOTE_ADDR") or "")
    address = str(BaseThrottle().get_ident(request) or "")
    return address[:ADDRESS_MAX_LENGTH], remote[:ADDRESS_MAX_LENGTH]


def record_access(
    *,
    action: str,
    case_ids: Iterable[int],
    actor: Any,
    request: Any = None,
    channel: str = AccessLogEntry.Channel.API,
    path: str = "",
    target: str = "",
    fields: Iterable[str] = (),
) -> AccessLogEntry:
    """Write one entry and its case rows (in one transaction). ``request`` gives address and path."""
    ids = sorted({int(pk) for pk in case_ids})
    address = remote = ""
    if request is not None:
        address, remote = client_address(request)
        path = path or str(request.path)
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        entry = AccessLogEntry.objects.create(
            actor=user,
            action=action,
            channel=channel,
            address=address,
            remote_addr=remote,
            path=path[:PATH_MAX_LENGTH],
            target=target[:100],
            fields=list(fields),
            case_count=len(ids),
        )
        _insert_case_rows(entry.pk, ids)
    return entry


def _insert_case_rows(entry_id: int, case_ids: list[int]) -> None:
    """The entry's case rows: ``executemany`` of one parameterised INSERT, in batches.

    ``bulk_create`` builds a model instance per row and spends about 75 us a row doing it (7.6 s
    for an import of 100,000 cases); this writes the same rows in a fraction of that. Inserting
    rows is all an append-only table allows, so nothing of the ORM's bookkeeping is missed.
    """
    if not case_ids:
        return
    meta = AccessedCase._meta
    quote = connection.ops.quote_name
    table, entry_column, case_column = (
        quote(name) for name in (meta.db_table, meta.get_field("entry").column, meta.get_field("case").column)
    )
    # Names from the model, values as parameters.
    sql = f"INSERT INTO {table} ({entry_column}, {case_column}) VALUES (%s, %s)"  # noqa: S608
    with connection.cursor() as cursor:
        for start in range(0, len(case_ids), BULK_BATCH):
            cursor.executemany(sql, [(entry_id, pk) for pk in case_ids[start : start + BULK_BATCH]])
