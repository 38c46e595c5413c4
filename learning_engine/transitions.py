"""Helpers for the state machines on the models.

Each model keeps one table of allowed source states per target next to its ``Status`` choices.
A transition claims the row with a conditional UPDATE (``WHERE pk = .. AND status = <what we
saw>``) and checks the row count. That is correct on SQLite as well as PostgreSQL, unlike
``select_for_update``, and it makes a stale copy of a row fail instead of overwriting a change
a fresher copy already made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import models

from learning_engine.exceptions import TransitionError


def check_allowed(table: Mapping[str, frozenset[str] | set[str]], *, current: str, target: str, label: str) -> None:
    allowed = table.get(target, frozenset())
    if current not in allowed:
        raise TransitionError(
            f"{label} is {current}; it cannot become {target}.",
            current_status=current,
            target_status=target,
        )


def claim(instance: models.Model, *, expected: Mapping[str, Any], **changes: Any) -> None:
    """UPDATE the row only if it still holds ``expected``; raise if someone got there first.

    ``expected`` is what the caller read (``{"status": "submitted"}``, perhaps with a revision or
    a lease); ``changes`` are written to the row and then to ``instance``. Plain values only:
    an ``F()`` expression would leave the instance holding the expression.
    """
    model = type(instance)
    manager = model._default_manager
    if manager.filter(pk=instance.pk, **expected).update(**changes) != 1:
        # Report the state field the caller expected (the first key: "status", "approval_status"...).
        state_field = next(iter(expected)).split("__", 1)[0]
        current = manager.filter(pk=instance.pk).values_list(state_field, flat=True).first()
        raise TransitionError(
            f"{str(model._meta.verbose_name).capitalize()} {instance.pk} changed meanwhile "
            f"(it is now {current}); reload it and try again.",
            current_status=current,
        )
    for name, value in changes.items():
        setattr(instance, name, value)
