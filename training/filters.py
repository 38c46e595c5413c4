"""Query filters of the dataset and training-job lists.

Every parameter is validated: a bad value is a 400 with a ``code``, never a 500 and never a
silently ignored filter that returns the wrong rows. A model type is named by its slug and an
unknown slug is a 400 (a typo should not look like "no jobs"); a creator is named by username.
"""

from __future__ import annotations

import django_filters

from learning_engine.filters import CreatedDateFilterSet
from training.models import DatasetSnapshot, ModelType, TrainingJob


def _model_type_filter() -> django_filters.ModelChoiceFilter:
    return django_filters.ModelChoiceFilter(
        field_name="model_type",
        to_field_name="slug",
        queryset=ModelType.objects.all(),
        help_text="Model type slug.",
    )


class DatasetSnapshotFilter(CreatedDateFilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=DatasetSnapshot.Status.choices, help_text="One or more statuses (repeat the parameter)."
    )
    model_type = _model_type_filter()
    created_by = django_filters.CharFilter(
        field_name="created_by__username", max_length=150, help_text="Username of the creator."
    )

    class Meta:
        model = DatasetSnapshot
        fields: list[str] = []


class TrainingJobFilter(CreatedDateFilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=TrainingJob.Status.choices, help_text="One or more statuses (repeat the parameter)."
    )
    model_type = _model_type_filter()
    created_by = django_filters.CharFilter(
        field_name="created_by__username", max_length=150, help_text="Username of the creator."
    )
    executor = django_filters.ChoiceFilter(
        choices=TrainingJob.Executor.choices, help_text="Who runs the job: the built-in worker or an external trainer."
    )

    class Meta:
        model = TrainingJob
        fields: list[str] = []
