from __future__ import annotations

from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    name = "models_registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from cases.dictionary.models import dictionary_published
        from models_registry.experiments import hooks as experiments_hooks
        from models_registry.registry.registration import register_completed_job, register_missed_jobs
        from training.signals import job_completed, sweep

        job_completed.connect(register_completed_job, dispatch_uid="register_completed_job")
        sweep.connect(register_missed_jobs, dispatch_uid="register_missed_jobs")
        # Predict checks records against the cohort's current dictionary version, read once per
        # serving generation: a publication starts a new one.
        dictionary_published.connect(_dictionary_published, dispatch_uid="serving_dictionary_published")
        # The A/B tests fill in the callbacks and signal the registry and serving declare for them
        # (the layers import one way: experiments -> serving -> registry).
        experiments_hooks.connect()


def _dictionary_published(sender: object, **kwargs: object) -> None:
    from models_registry.generation import bump_generation

    bump_generation()
