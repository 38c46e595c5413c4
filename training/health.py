"""The training part of GET /api/v1/health/: is work moving?"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from training.models import TrainingJob
from training.reaper import stale_limit


def training_check() -> dict[str, Any]:
    """Queued and running job counts, and running jobs whose worker stopped heartbeating."""
    try:
        cutoff = timezone.now() - stale_limit()
        running = TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING)
        queued = TrainingJob.objects.filter(status=TrainingJob.Status.QUEUED).count()
        stale = running.filter(heartbeat_at__lt=cutoff).count()
        return {"ok": stale == 0, "queued": queued, "running": running.count(), "stale_running": stale}
    except DatabaseError as exc:
        return {"ok": False, "error": type(exc).__name__}
