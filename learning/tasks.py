"""The learning loop's periodic task: every ``LEARNING_CYCLE_INTERVAL_SECONDS`` (default 300), each
model type with an enabled policy either advances its open cycle one step or, when none is open,
opens one if a trigger fires (``learning.cycles``), unless the back-off after a rejected, failed or
not promoted cycle holds it: then ``waiting`` says why, until when. One model type's failure is logged and the
others go on. The chain starts when a policy version is saved and whenever ``learning_cycle`` runs.
"""

from __future__ import annotations

import logging
from typing import Any

from learning_engine.periodic import ensure_scheduled, periodic_task

logger = logging.getLogger(__name__)


def run_once() -> dict[str, Any]:
    """One pass over the model types with a policy (what each run of the chain does)."""
    from learning.cycles import CycleRefused, advance, open_cycle_if_triggered
    from learning.models import LearningCycle, LearningPolicy
    from training.models import ModelType

    summary: dict[str, Any] = {"advanced": [], "opened": [], "waiting": [], "errors": []}
    model_type_ids = LearningPolicy.objects.values_list("model_type_id", flat=True).distinct()
    for model_type in ModelType.objects.filter(pk__in=model_type_ids).order_by("pk"):
        try:
            cycle = LearningCycle.objects.filter(model_type=model_type, status__in=LearningCycle.OPEN).first()
            if cycle is None:
                cycle = open_cycle_if_triggered(model_type)
                if cycle is None:
                    continue
                summary["opened"].append(cycle.pk)
            status = advance(cycle)
            summary["advanced"].append({"cycle": cycle.pk, "status": status})
        except CycleRefused as exc:
            logger.info("Learning loop of %s: %s", model_type.slug, exc.message)
            if exc.code == "backing_off":
                summary["waiting"].append({"model_type": model_type.slug, "reason": exc.message})
        except Exception:
            logger.exception("Learning loop of model type %s failed this run", model_type.pk)
            summary["errors"].append(model_type.pk)
    return summary


@periodic_task(
    schedule="run_learning_cycles", interval_setting="LEARNING_CYCLE_INTERVAL_SECONDS", default_interval_seconds=300
)
def run_learning_cycles() -> dict[str, Any]:
    return run_once()


def ensure_learning_scheduled() -> bool:
    return ensure_scheduled(run_learning_cycles)
