from __future__ import annotations

from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    name = "models_registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from models_registry.registration import register_completed_job
        from training.signals import job_completed

        job_completed.connect(register_completed_job, dispatch_uid="register_completed_job")
