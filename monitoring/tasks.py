"""The periodic snapshots: a chain of ``learning_engine.periodic`` (docs/design.md, "Periodic tasks").

Each run computes one snapshot per current scope (``monitoring.compute.current_scopes``; a scope
that fails is logged and skipped, the others go on), deletes input tallies older than
``MONITORING_TALLY_RETENTION_DAYS`` and comes back ``MONITORING_INTERVAL_SECONDS`` later. An
activation starts the chain unless one is alive, so a chain that died (a worker gone, the queue
emptied) revives with the next activation; ``manage.py monitor`` computes a snapshot at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from learning_engine.periodic import ensure_scheduled, periodic_task

logger = logging.getLogger(__name__)


@periodic_task(
    schedule="take_monitoring_snapshots", interval_setting="MONITORING_INTERVAL_SECONDS", default_interval_seconds=3600
)
def take_monitoring_snapshots() -> dict[str, Any]:
    """One round: a snapshot per scope, then the pruning of old tallies."""
    from monitoring.compute import compute_snapshot, current_scopes
    from monitoring.models import InputTally

    done, failed = [], []
    for scope in current_scopes():
        try:
            done.append(compute_snapshot(scope).pk)
        except Exception:
            logger.exception("Monitoring snapshot of %s failed.", scope.describe())
            failed.append(scope.describe())
    cutoff = timezone.now() - dt.timedelta(days=int(settings.MONITORING_TALLY_RETENTION_DAYS))
    pruned, _ = InputTally.objects.filter(created_at__lt=cutoff).delete()
    return {"snapshots": done, "failed": failed, "tallies_pruned": pruned}


def ensure_monitoring_scheduled() -> bool:
    return ensure_scheduled(take_monitoring_snapshots)


def on_activation(sender: Any, instance: Any, created: bool = False, raw: bool = False, **kwargs: Any) -> None:
    """``post_save`` receiver of ``ActivationHistory``: a version became active, so start the chain."""
    if created and not raw and instance.to_version_id is not None:
        ensure_monitoring_scheduled()
