from __future__ import annotations

from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    name = "models_registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from models_registry.registration import register_completed_job, register_missed_jobs
        from training.signals import job_completed, sweep

        job_completed.connect(register_completed_job, dispatch_uid="register_completed_job")
        sweep.connect(register_missed_jobs, dispatch_uid="register_missed_jobs")
