from __future__ import annotations

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Datasets and training"

    def ready(self) -> None:
        from cases.signals import demo_loaded
        from training.demo import on_demo_loaded

        demo_loaded.connect(on_demo_loaded, dispatch_uid="training_demo_model_types")

        from training.signals import job_queued
        from training.tasks import enqueue_queued_job

        job_queued.connect(enqueue_queued_job, dispatch_uid="training_enqueue_queued_job")

        from learning_engine.health import HEALTH_CHECKS
        from training.health import training_check

        HEALTH_CHECKS["training"] = training_check
