"""The reaper: running jobs whose heartbeat stopped are requeued, or failed when out of attempts.

A worker that dies (SIGKILL, a lost machine) leaves its job ``running`` with a heartbeat that no
longer moves. Reaping clears the job's lease, so if that worker was only slow, not dead, its next
write is refused (``LeaseLost``) and it stops.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from learning_engine.exceptions import TransitionError
from training.models import TrainingJob

logger = logging.getLogger(__name__)


def stale_limit() -> dt.timedelta:
    return dt.timedelta(seconds=int(settings.JOB_STALE_SECONDS))


def reap_stale_jobs(*, now: dt.datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Reap every running job whose heartbeat is older than the stale limit. Plain-JSON summary."""
    cutoff = (now or timezone.now()) - stale_limit()
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
