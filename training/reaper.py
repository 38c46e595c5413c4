"""The reaper: running jobs whose heartbeat stopped are requeued, or failed when out of attempts.

A worker that dies (SIGKILL, a lost machine) leaves its job ``running`` with a heartbeat that no
longer moves. Reaping clears the job's lease, so if that worker was only slow, not dead, its next
write is refused (``LeaseLost``) and it stops.

Dataset snapshots too: a build that dies leaves its snapshot ``building``. A build moves the
snapshot's heartbeat as it goes (``DatasetSnapshot.heartbeat``), so a building snapshot whose heartbeat
is older than the same stale limit is failed with the reason; one whose build never started (its
task lost) is failed once it is ``DATASET_QUEUED_LIMIT_SECONDS`` old (default a day: a build may wait
behind long jobs). A build that was only slow learns at its next heartbeat and stops.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from learning_engine.exceptions import TransitionError
from training.models import DatasetSnapshot, TrainingJob
from training.signals import sweep

logger = logging.getLogger(__name__)


def stale_limit() -> dt.timedelta:
    return dt.timedelta(seconds=int(settings.JOB_STALE_SECONDS))


def queued_build_limit() -> dt.timedelta:
    return dt.timedelta(seconds=int(getattr(settings, "DATASET_QUEUED_LIMIT_SECONDS", 24 * 3600)))


def reap_stale_jobs(*, now: dt.datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Reap every running job whose heartbeat is older than the stale limit, and every stale
    building dataset snapshot (``datasets_failed``). Plain-JSON summary."""
    now = now or timezone.now()
    summary = _reap_jobs(now - stale_limit(), dry_run=dry_run)
    summary["datasets_failed"] = reap_stale_datasets(now=now, dry_run=dry_run)
    if not dry_run:
        # Other apps' repairs (training never imports them): e.g. the registry registers a
        # completed job whose worker died between the commit and the registration hook.
        for _receiver, result in sweep.send_robust(sender=TrainingJob, now=now):
            if isinstance(result, BaseException):
                logger.error("A reaper sweep receiver failed: %r", result)
            elif isinstance(result, dict):
                for key, value in result.items():
                    if key in summary:  # a receiver may add to the summary, never rewrite the reaper's counts
                        logger.error("A reaper sweep receiver reported %r, which the reaper reports itself", key)
                    else:
                        summary[key] = value
    return summary


def reap_stale_datasets(*, now: dt.datetime | None = None, dry_run: bool = False) -> list[int]:
    """Fail building snapshots whose build stopped (heartbeat older than the stale limit) or never
    started (created longer ago than the queued limit). Their ids."""
    now = now or timezone.now()
    limit, queued_limit = stale_limit(), queued_build_limit()
    stale = DatasetSnapshot.objects.filter(status=DatasetSnapshot.Status.BUILDING).filter(
        Q(heartbeat_at__lt=now - limit) | Q(heartbeat_at__isnull=True, created_at__lt=now - queued_limit)
    )
    failed: list[int] = []
    for snapshot in stale.defer("manifest").order_by("pk").iterator(chunk_size=100):
        if dry_run:
            failed.append(snapshot.pk)
            continue
        if snapshot.heartbeat_at is None:
            cutoff = now - queued_limit
            reason = (
                f"The build never started within {int(queued_limit.total_seconds())} s of the request "
                "(its task was lost?); build the dataset again."
            )
        else:
            cutoff = now - limit
            reason = (
                f"The build stopped: no heartbeat for more than {int(limit.total_seconds())} s "
                f"(its worker died?); build the dataset again."
            )
        try:
            snapshot.reap(stale_before=cutoff, reason=reason)
        except TransitionError:
            continue  # it moved (a heartbeat, or it finished) between our read and our write
        failed.append(snapshot.pk)
        logger.warning("Reaped dataset %s: %s", snapshot.pk, reason)
    return failed


def _reap_jobs(cutoff: dt.datetime, *, dry_run: bool) -> dict[str, Any]:
    stale = TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING, heartbeat_at__lt=cutoff).order_by("pk")
    summary: dict[str, Any] = {"requeued": [], "failed": [], "skipped": []}
    for job in stale.iterator(chunk_size=100):
        if dry_run:
            summary["requeued" if job.attempts < job.max_attempts else "failed"].append(job.pk)
            continue
        try:
            outcome = job.reap(stale_before=cutoff)
        except TransitionError:
            # It heartbeat, finished or was cancelled between our read and our write: not stale.
            summary["skipped"].append(job.pk)
            continue
        key = "requeued" if outcome == TrainingJob.Status.QUEUED else "failed"
        summary[key].append(job.pk)
        logger.warning("Reaped job %s (worker %s): %s", job.pk, job.worker_id or "unknown", key)
    return summary
