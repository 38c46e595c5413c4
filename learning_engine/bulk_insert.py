"""Rows inserted without the ORM's per-object work: the writes of every predict request.

``bulk_create`` builds a model instance per row and runs every field's ``pre_save`` and
``get_db_prep_save``, then compiles the INSERT: for the prediction log that cost ten times what
the database spends on it (1,000 rows: ~45 ms against ~4 ms), and for one predict request's
monitoring tally about as much as the log's own INSERT (the HTTP benchmark's profile, README).
``insert_rows`` writes tuples in a fixed column order with one prepared statement per chunk of the
backend's parameter limit. Values go in as they are, except JSON and datetime fields, prepared by
their own fields as Django would (a datetime once per distinct value: a batch shares one).

On SQLite, inside a transaction, the statement goes to the driver's own connection, planned with
its ``?`` placeholders: Django's cursor wrapper (a cursor object per call, its placeholder
rewriting, the query-logging checks) cost a predict request more than the INSERTs themselves
(about 0.2 ms of its 1.5-2 ms, ``python -m benchmarks http``). What the wrapper guarantees is kept:
database errors arrive as Django's (``IntegrityError`` for a replayed CDS Hooks token), a broken
transaction is refused, and whenever someone looks at the queries (``DEBUG``,
``CaptureQueriesContext``, an ``execute_wrapper``) the wrapper's path runs instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import connections, models, transaction


@dataclass(frozen=True)
class _Plan:
    """What one (model, columns, database) insert needs, worked out once per process."""

    head: str
    tail: str
    placeholder: str
    qmark: str  # one row's whole statement with SQLite's own placeholders (the driver's path)
    width: int  # columns per row
    # (position, field, is_datetime): JSON and datetime values are prepared by their field.
    prepared: tuple[tuple[int, models.Field[Any, Any], bool], ...]


_PLANS: dict[tuple[type[models.Model], tuple[str, ...], str, str], _Plan] = {}


def _plan(model: type[models.Model], columns: Sequence[str], using: str, returning: bool) -> _Plan:
    key = (model, (*columns, "RETURNING" if returning else ""), using, connections[using].vendor)
    found = _PLANS.get(key)
    if found is not None:
        return found
    connection = connections[using]
    meta = model._meta
    fields = {field.attname: field for field in meta.concrete_fields}
    prepared = tuple(
        (position, fields[name], isinstance(fields[name], models.DateTimeField))
        for position, name in enumerate(columns)
        if isinstance(fields[name], (models.JSONField, models.DateTimeField))
    )
    quote = connection.ops.quote_name
    # Only quoted names of this model's table and columns are formatted in; values are parameters.
    names = ", ".join(quote(str(fields[name].column)) for name in columns)
    head = f"INSERT INTO {quote(meta.db_table)} ({names}) VALUES "  # noqa: S608
    tail = f" RETURNING {quote(str(meta.pk.column))}" if returning else ""
    plan = _Plan(
        head=head,
        tail=tail,
        placeholder="(" + ", ".join(["%s"] * len(columns)) + ")",
        qmark=head + "(" + ", ".join(["?"] * len(columns)) + ")" + tail,
        width=len(columns),
        prepared=prepared,
    )
    _PLANS[key] = plan
    return plan


def insert_rows(
    model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[Any]], *, using: str, returning: bool
) -> list[int]:
    """Insert ``rows`` (values in ``columns`` order, by attname) into ``model``'s table.

    Returns the new ids in row order when ``returning`` (``INSERT ... RETURNING``, in VALUES order
    as ``bulk_create`` relies on too), else ``[]``. Several statements (a batch above the parameter
    limit) share a transaction: the rows are written whole or not at all.
    """
    if not rows:
        return []
    connection = connections[using]
    if returning and not connection.features.can_return_rows_from_bulk_insert:  # pragma: no cover (MySQL)
        objects = [model(**dict(zip(columns, row, strict=True))) for row in rows]
        return [obj.pk for obj in model._default_manager.db_manager(using).bulk_create(objects)]
    plan = _plan(model, columns, using, returning)
    if len(rows) == 1 and _driver_path(connection):
        return _insert_one(connection, plan, rows[0], returning=returning)
    # Read per call, not planned: the backend's limit may differ per connection (and tests lower it).
    limit = connection.features.max_query_params or 999
    per_statement = max(1, min(len(rows), limit // plan.width))
    times: dict[Any, Any] = {}
    ids: list[int] = []
    several = len(rows) > per_statement
    with (
        transaction.atomic(using=using, savepoint=False) if several else nullcontext(),
        connection.cursor() as cursor,
    ):
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            params: list[Any] = []
            for row in chunk:
                values = list(row)
                for position, field, is_datetime in plan.prepared:
                    value = values[position]
                    if is_datetime:
                        if value not in times:
                            times[value] = field.get_db_prep_save(value, connection)
                        values[position] = times[value]
                    else:
                        values[position] = field.get_db_prep_save(value, connection)
                params += values
            cursor.execute(plan.head + ", ".join([plan.placeholder] * len(chunk)) + plan.tail, params)
            if returning:
                ids += [found[0] for found in cursor.fetchall()]
    return ids


def _driver_path(connection: Any) -> bool:
    """Whether one row may go straight to the driver: SQLite, inside a transaction (so connected,
    and committed or rolled back by it), and nobody looking at the queries."""
    return bool(
        connection.vendor == "sqlite"
        and connection.in_atomic_block
        and connection.connection is not None
        and not connection.execute_wrappers
        and not connection.queries_logged
    )


def _insert_one(connection: Any, plan: _Plan, row: Sequence[Any], *, returning: bool) -> list[int]:
    """One row through the driver's connection (``_driver_path``), as the cursor wrapper would."""
    values = list(row)
    for position, field, _is_datetime in plan.prepared:
        values[position] = field.get_db_prep_save(values[position], connection)
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        cursor = connection.connection.execute(plan.qmark, values)
        return [found[0] for found in cursor.fetchall()] if returning else []
