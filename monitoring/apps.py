from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from models_registry.models import ActivationHistory, ModelVersion
        from models_registry.serving.serve import register_input_observer
        from monitoring.recording import observe_inputs, on_version_saved
        from monitoring.tasks import on_activation

        # A new version's reference profile; the inputs each version answers; the periodic
        # snapshots start with the first activation (and revive with each later one).
        post_save.connect(on_version_saved, sender=ModelVersion, dispatch_uid="monitoring_reference_profile")
        register_input_observer(observe_inputs)
        post_save.connect(on_activation, sender=ActivationHistory, dispatch_uid="monitoring_schedule")
