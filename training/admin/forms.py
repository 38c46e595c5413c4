"""The training admin's forms: a model type's defaults, a dataset request, a job request, a cancellation.

Each asks the domain's own checks (``validate_hyperparameters``, ``check_fractions``,
``date_range_errors``) so that every error stands beside its field; the models make the same checks.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html

from learning_engine.display import (
    fmt_count,
)
from learning_engine.exceptions import DomainError, InvalidRequest
from learning_engine.forms import StrictJSONField
from training.algorithms import SPECS, validate_hyperparameters
from training.models import DatasetSnapshot, ModelType, TrainingJob
from training.models.dataset import date_range_errors, visible_to
from training.splitting import check_fractions

REASON_MAX_LENGTH = 500
# Convenience fields of the job form that are hyperparameters of the epoch-based algorithms.
EPOCH_FIELDS = ("epochs", "batch_size", "learning_rate")
MAX_ATTEMPTS_LIMIT = 20


class ModelTypeForm(forms.ModelForm):
    class Meta:
        model = ModelType
        fields = (
            "slug",
            "name",
            "description",
            "cohort",
            "label_field",
            "default_algorithm",
            "default_hyperparameters",
            "epoch_algorithm",
            "min_cases_to_train",
            "min_quality",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        algorithm = cleaned.get("default_algorithm")
        given = cleaned.get("default_hyperparameters")
        if algorithm and given is not None and "default_hyperparameters" not in self.errors:
            try:
                validate_hyperparameters(algorithm, given or {})
            except InvalidRequest as exc:
                self.add_error("default_hyperparameters", exc.message)
        return cleaned


class DatasetCreateForm(forms.ModelForm):
    """What ``training.datasets.create_snapshot`` takes; the build then runs in the background."""

    # Set by ``DatasetSnapshotAdmin.get_form`` to the user asking: the date range rule depends on
    # whether they may see PHI. Unset, the form judges as for a user without that permission.
    requesting_user: Any = None

    # Labels in the words of ``prepare_dataset``'s flags (--min-quality, --validation-fraction, ...).
    min_quality = forms.FloatField(
        label="Minimum quality",
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text="Minimum quality score of the cases (0 to 1). Empty: the model type's default.",
    )
    encounter_after = forms.DateField(
        required=False,
        help_text="Optional: only encounters on or after this date. Without the PHI permission: a 1 January.",
    )
    encounter_before = forms.DateField(
        required=False,
        help_text="Optional: only encounters on or before this date. Without the PHI permission: a 31 December.",
    )
    force = forms.BooleanField(
        label="Build another copy",
        required=False,
        help_text="Build even when a ready dataset of the model type already has this content "
        "(the same cases, labels and splits); else the form points to it.",
    )

    class Meta:
        model = DatasetSnapshot
        fields = ("model_type", "validation_fraction", "test_fraction", "seed")
        help_texts = {
            "validation_fraction": "Share of patients in the validation split (0 to below 1).",
            "test_fraction": "Share of patients in the test split (above 0, below 1).",
            "seed": "The same cases and seed give the same split and the same content hash.",
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        validation, test = cleaned.get("validation_fraction"), cleaned.get("test_fraction")
        if validation is not None and test is not None:
            try:
                check_fractions(validation, test)
            except ValueError as exc:
                # On a field, so the model's own range constraint is not reported a second time.
                message = str(exc)
                target = "validation_fraction" if message.startswith("The validation fraction") else "test_fraction"
                self.add_error(target, message)
        # The domain's rule (create_snapshot enforces it too), asked here so each error stands
        # beside its field: without the PHI permission a range covers whole years.
        after, before = cleaned.get("encounter_after"), cleaned.get("encounter_before")
        for field, errors in date_range_errors(after, before, by=self.requesting_user).items():
            for error in errors:
                self.add_error(field, error)
        if not self.errors and not cleaned.get("force") and cleaned.get("model_type") is not None:
            self._point_to_a_twin(cleaned)
        return cleaned

    def _point_to_a_twin(self, cleaned: dict[str, Any]) -> None:
        """A ready dataset with the content this one would have: named, linked, nothing built."""
        from training.datasets import ready_twin, snapshot_request  # pyarrow: see save_model

        try:
            request = snapshot_request(
                cleaned["model_type"],
                by=self.requesting_user,
                min_quality=cleaned.get("min_quality"),
                encounter_after=cleaned.get("encounter_after"),
                encounter_before=cleaned.get("encounter_before"),
                validation_fraction=cleaned["validation_fraction"],
                test_fraction=cleaned["test_fraction"],
                seed=cleaned["seed"],
            )
        except DomainError:
            return  # save_model's create_snapshot refuses it with the reason
        twin = ready_twin(request, by=self.requesting_user)
        if twin is not None:
            message = format_html(
                '<a href="{}">Dataset {}</a> is ready with this content ({} cases, content hash {}). '
                'Use it, or tick "Build another copy" to build a second one.',
                reverse("admin:training_datasetsnapshot_change", args=[twin.pk]),
                twin.pk,
                fmt_count(twin.case_count or 0),
                twin.content_hash[:12],
            )
            self.add_error("force", ValidationError(message, code="duplicate_dataset"))


class DatasetChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        digest = obj.content_hash[:12] if obj.content_hash else "no hash"
        return f"Dataset {obj.pk}: {obj.model_type.slug}, {fmt_count(obj.case_count)} cases, {digest}"


class JobCreateForm(forms.ModelForm):
    """What ``TrainingJob.submit`` takes. Errors show on the form; the job is created by ``submit``."""

    algorithm = forms.ChoiceField(
        required=False,
        choices=[("", "Default of the model type"), *ModelType.Algorithm.choices],
        help_text="Empty: the model type's default; its epoch-based algorithm if epochs or batch size are given.",
    )
    epochs = forms.IntegerField(required=False, min_value=1, help_text="SGD and MLP only.")
    batch_size = forms.IntegerField(required=False, min_value=1, help_text="SGD and MLP only.")
    learning_rate = forms.FloatField(required=False, min_value=0.0, help_text="Optional.")
    hyperparameters = StrictJSONField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text='Optional JSON object, e.g. {"alpha": 0.0001}. Known names per algorithm: '
        + "; ".join(f"{name}: {', '.join(spec)}" for name, spec in SPECS.items())
        + ".",
    )
    dataset = DatasetChoiceField(
        required=False,
        queryset=DatasetSnapshot.objects.none(),
        help_text="A ready snapshot of the same model type. Empty: the job prepares a fresh one first.",
    )
    priority = forms.IntegerField(initial=0, min_value=-100, max_value=100, help_text="-100 (last) to 100 (first).")
    max_attempts = forms.IntegerField(initial=3, min_value=1, max_value=MAX_ATTEMPTS_LIMIT)

    class Meta:
        model = TrainingJob
        fields = ("model_type", "algorithm", "hyperparameters", "dataset", "priority", "max_attempts")

    # The requesting user (set by ``TrainingJobAdmin.get_form``): the snapshots offered are those
    # they may see (``visible_to``); without a user, those anyone may see.
    user: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.submission: dict[str, Any] = {}
        ready = DatasetSnapshot.objects.filter(status=DatasetSnapshot.Status.READY)
        self.fields["dataset"].queryset = (  # type: ignore[attr-defined]
            visible_to(ready, self.user)
            .select_related("model_type")
            .defer("manifest", "scan_report", "label_counts", "filters")
            .order_by("-created_at", "-id")
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        given = cleaned.get("hyperparameters")
        if given in (None, ""):
            given = {}
        if not isinstance(given, dict):
            self.add_error("hyperparameters", 'Must be a JSON object, such as {"alpha": 0.0001}.')
            return cleaned
        given = dict(given)
        for name in EPOCH_FIELDS:
            value = cleaned.get(name)
            if value is None:
                continue
            if name in given and given[name] != value:
                self.add_error(name, f"The hyperparameters also give {name} = {given[name]!r}; give it once.")
            given[name] = value
        model_type = cleaned.get("model_type")
        dataset = cleaned.get("dataset")
        if model_type is None or self.errors:
            return cleaned
        if dataset is not None and dataset.model_type_id != model_type.pk:
            self.add_error(
                "dataset", f"Dataset {dataset.pk} belongs to {dataset.model_type.slug}, not {model_type.slug}."
            )
            return cleaned
        algorithm = cleaned.get("algorithm") or None
        # The same checks TrainingJob.submit makes, here so that they show on the form.
        resolved = model_type.resolve_algorithm(algorithm, given)
        defaults = model_type.default_hyperparameters if resolved == model_type.default_algorithm else {}
        try:
            validate_hyperparameters(resolved, {**defaults, **given})
        except InvalidRequest as exc:
            field = exc.extra.get("field")
            target = field if field in EPOCH_FIELDS and cleaned.get(field) is not None else "hyperparameters"
            self.add_error(target, exc.message)
            return cleaned
        self.submission = {
            "model_type": model_type,
            "dataset": dataset,
            "algorithm": algorithm,
            "hyperparameters": given,
            "priority": cleaned["priority"],
            "max_attempts": cleaned["max_attempts"],
        }
        return cleaned


class CancelForm(forms.Form):
    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why the jobs are cancelled. Kept in each job's audit trail.",
    )
