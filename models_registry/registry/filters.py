"""Query filters of the version list (``model-types/{slug}/versions/``).

Every parameter is validated: a bad value is a 400 with a ``code``, never a 500 and never a
silently ignored filter (the same rules as ``training.filters``).
"""

from __future__ import annotations

import django_filters

from learning_engine.filters import RegisteredDateFilterSet
from models_registry.registry.models import ModelVersion, PerformanceRecord
from training.models import ModelType


class ModelVersionFilter(RegisteredDateFilterSet):
    approval_status = django_filters.MultipleChoiceFilter(
        choices=ModelVersion.Approval.choices, help_text="One or more approval states (repeat the parameter)."
    )
    deployment_status = django_filters.MultipleChoiceFilter(
        choices=ModelVersion.Deployment.choices, help_text="One or more deployment states (repeat the parameter)."
    )
    algorithm = django_filters.ChoiceFilter(choices=ModelType.Algorithm.choices)
    created_by = django_filters.CharFilter(
        field_name="created_by__username", max_length=150, help_text="Username of the job's creator."
    )
    dataset = django_filters.NumberFilter(
        field_name="dataset_id", min_value=1, max_value=2**63 - 1, help_text="Dataset snapshot id."
    )

    class Meta:
        model = ModelVersion
        fields: list[str] = []


class PerformanceRecordFilter(django_filters.FilterSet):
    source = django_filters.MultipleChoiceFilter(
        choices=PerformanceRecord.Source.choices, help_text="One or more sources (repeat the parameter)."
    )

    class Meta:
        model = PerformanceRecord
        fields: list[str] = []
