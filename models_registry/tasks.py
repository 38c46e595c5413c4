"""The A/B expiry task under its former path, for rows queued before the move.

The database queue stores a task by its dotted path (``DBTaskResult.task_path``): a chain enqueued
as ``models_registry.tasks.conclude_expired_ab_tests_periodically`` must still resolve here. New
runs enqueue under ``models_registry.experiments.tasks``.
"""

from __future__ import annotations

from models_registry.experiments.tasks import conclude_expired_ab_tests_periodically

__all__ = ["conclude_expired_ab_tests_periodically"]
