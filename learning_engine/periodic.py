"""Periodic tasks on top of django.tasks, which has no scheduler of its own.

A periodic task is a chain: each run re-enqueues itself ``interval`` seconds later, and a
``PeriodicSchedule`` row says which chain is the live one (docs/design.md, "Periodic tasks").
Write the work as a function of no arguments, decorate it, and start the chain where it is needed::

    @periodic_task(schedule="take_monitoring_snapshots", interval_setting="MONITORING_INTERVAL_SECONDS")
    def take_monitoring_snapshots() -> dict[str, Any]:
        ...

    ensure_scheduled(take_monitoring_snapshots)   # on commit; a no-op while the chain is alive

The decorated name is the django.tasks ``Task`` that the queue stores by its dotted path, so a
chain survives restarts; rename or move it only with a re-export at the former path.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.tasks import Task, task
from django.utils import timezone

from learning_engine.models import PeriodicSchedule

logger = logging.getLogger(__name__)

# The shortest wait between two runs: a run that took longer than the interval does not make the
# next one start at once and pile runs up.
MIN_DELAY_SECONDS = 1.0

type PeriodicTask = Task[[str], dict[str, Any]]


@dataclass(frozen=True)
class Chain:
    """What ``periodic_task`` declared: the schedule row's name and where the interval comes from."""

    schedule: str
    interval_setting: str
    default_interval_seconds: int

    def interval_seconds(self) -> int:
        # Read on every start, so a deployment's setting (and a test's override) applies.
        return int(getattr(settings, self.interval_setting, self.default_interval_seconds))


_chains: dict[str, Chain] = {}  # by the task's dotted path


def periodic_task(
    *, schedule: str, interval_setting: str, default_interval_seconds: int = 300, queue_name: str | None = None
) -> Callable[[Callable[[], Mapping[str, Any]]], PeriodicTask]:
    """Make ``work`` (no arguments, a JSON-able summary) a self-rescheduling chain.

    Each run claims the ``schedule`` row with the chain's token (a superseded chain stops: outcome
    ``superseded``), runs ``work`` and re-enqueues itself for the next interval. When ``work`` raises,
    the failure is logged with its traceback, the chain is re-enqueued all the same (a database away
    for a moment must not end the chain), and the exception is raised again so that the queue records
    the run as failed. The interval is ``settings.<interval_setting>``, else the default.
    """

    def decorate(work: Callable[[], Mapping[str, Any]]) -> PeriodicTask:
        chain = Chain(schedule, interval_setting, default_interval_seconds)
        taken = [path for path, other in _chains.items() if other.schedule == schedule]
        path = f"{work.__module__}.{work.__qualname__}"
        if taken and taken != [path]:
            raise ImproperlyConfigured(f"Periodic schedule {schedule!r} is already the chain of {taken[0]}.")

        # The task takes the chain's token; it keeps work's module and name, so its dotted path is
        # the module attribute this decorator's result is assigned to (how the queue finds it again).
        @functools.wraps(work)
        def run(token: str) -> dict[str, Any]:
            return _run_chain(chain, task_of_chain, work, token)

        if queue_name is None:
            task_of_chain: PeriodicTask = task(run)
        else:
            task_of_chain = task(run, queue_name=queue_name)
        _chains[path] = chain
        return task_of_chain

    return decorate


def ensure_scheduled(periodic: PeriodicTask) -> bool:
    """Start ``periodic``'s chain unless one ran within two intervals; True when one was started.

    Safe to call as often as convenient (on every enqueue of related work, when a feature is first
    used): a live chain goes on, and of two processes reviving a dead one, one wins. The first run
    is enqueued on commit, so a rolled-back caller starts nothing.
    """
    chain = chain_of(periodic)
    token = PeriodicSchedule.start_chain_if_idle(chain.schedule, interval_seconds=chain.interval_seconds())
    if token is None:
        return False
    transaction.on_commit(lambda: periodic.enqueue(str(token)))
    return True


def chain_of(periodic: PeriodicTask) -> Chain:
    try:
        return _chains[periodic.module_path]
    except KeyError:
        raise ImproperlyConfigured(f"{periodic.module_path} is not a @periodic_task.") from None


def registered_chains() -> dict[str, Chain]:
    """Every chain declared so far, by its task's dotted path (those whose modules were imported)."""
    return dict(_chains)


def _run_chain(
    chain: Chain, periodic: PeriodicTask, work: Callable[[], Mapping[str, Any]], token: str
) -> dict[str, Any]:
    next_run = PeriodicSchedule.claim_run(chain.schedule, token)
    if next_run is None:
        return {"outcome": "superseded"}
    try:
        summary = dict(work())
    except Exception as exc:
        # The traceback names code locations and the exception its message: work of a periodic task
        # runs on de-identified or operational data and must keep PHI out of its messages.
        logger.exception(
            "Periodic task %s failed (%s); the chain goes on, next run at %s",
            chain.schedule,
            type(exc).__name__,
            next_run.isoformat(),
        )
        raise
    finally:
        _reschedule(chain, periodic, token, next_run)
    return {"outcome": "ran", **summary}


def _reschedule(chain: Chain, periodic: PeriodicTask, token: str, next_run: dt.datetime) -> None:
    now = timezone.now()
    delay = max(MIN_DELAY_SECONDS, (next_run - now).total_seconds())
    try:
        periodic.using(run_after=now + dt.timedelta(seconds=delay)).enqueue(token)
    except Exception:
        # The queue itself is away (its database, the broker): the chain ends here, and the next
        # ensure_scheduled() after two intervals starts a new one.
        logger.exception("Periodic task %s could not re-enqueue itself; the chain stops", chain.schedule)
        raise
