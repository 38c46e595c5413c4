from __future__ import annotations

from django.apps import AppConfig


class CdsHooksConfig(AppConfig):
    name = "cds_hooks"
    verbose_name = "CDS Hooks"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from cds_hooks.auth import clients_changed
        from cds_hooks.models import TrustedClient

        # The cached clients of every process (cds_hooks.auth.ClientCache) stop being trusted.
        post_save.connect(clients_changed, sender=TrustedClient, dispatch_uid="cds_hooks.clients_changed.save")
        post_delete.connect(clients_changed, sender=TrustedClient, dispatch_uid="cds_hooks.clients_changed.delete")
