from __future__ import annotations

from django.apps import AppConfig


class CdsHooksConfig(AppConfig):
    name = "cds_hooks"
    verbose_name = "CDS Hooks"
