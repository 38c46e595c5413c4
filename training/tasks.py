"""Background tasks (django.tasks). Arguments and results are plain JSON: ids, never objects."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def enqueue_job(job_id: int, priority: int) -> None:
    """Placeholder, replaced by the worker implementation."""
    logger.info("job %s queued (priority %s)", job_id, priority)
