from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles_after_migrate(sender: AppConfig, **kwargs: Any) -> None:
    from learning_engine.roles import sync_roles

    sync_roles(kwargs.get("apps"))


class LearningEngineConfig(AppConfig):
    name = "learning_engine"
    verbose_name = "Learning engine"

    def ready(self) -> None:
        # After every migrate, so that the groups always match learning_engine.roles.
        post_migrate.connect(_sync_roles_after_migrate, sender=self, dispatch_uid="sync_roles")
        # What the predict endpoints' cached credential states mirror (learning_engine.stateless_auth).
        from learning_engine.stateless_auth import connect_signals

        connect_signals()
