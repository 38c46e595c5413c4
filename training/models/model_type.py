"""Model types: what a diagnosis model is trained on and how, by default.

A model type lives in ``training`` because both datasets and jobs need it, and
``models_registry`` builds on ``training`` (imports flow one way).
"""

from __future__ import annotations

from typing import Any

from django.db import models

ALGORITHMS = ("logistic_regression", "sgd", "mlp", "gradient_boosting")
EPOCH_ALGORITHMS = ("sgd", "mlp")


class ModelType(models.Model):
    class Algorithm(models.TextChoices):
        LOGISTIC_REGRESSION = "logistic_regression", "Logistic regression"
        SGD = "sgd", "SGD (mini-batch epochs)"
        MLP = "mlp", "Multi-layer perceptron (mini-batch epochs)"
        GRADIENT_BOOSTING = "gradient_boosting", "Gradient boosting"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    cohort = models.CharField(max_length=100, help_text="The case cohort this model trains on.")
    label_field = models.CharField(
        max_length=64, default="diagnosis.code", help_text="Which field of the de-identified record is the label."
    )
    default_algorithm = models.CharField(
        max_length=32, choices=Algorithm.choices, default=Algorithm.LOGISTIC_REGRESSION
    )
    default_hyperparameters = models.JSONField(default=dict, blank=True)
    epoch_algorithm = models.CharField(
        max_length=32,
        choices=[(value, label) for value, label in Algorithm.choices if value in EPOCH_ALGORITHMS],
        default=Algorithm.SGD,
        help_text="Used when a job gives epochs or batch size without an algorithm.",
    )
    min_cases_to_train = models.PositiveIntegerField(default=50)
    min_quality = models.FloatField(default=0.5, help_text="Default minimum quality score of dataset cases.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_quality__gte=0.0) & models.Q(min_quality__lte=1.0),
                name="model_type_min_quality_0_1",
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    def resolve_algorithm(self, algorithm: str | None, hyperparameters: dict[str, Any]) -> str:
        """The algorithm a job runs: given, else epoch-based when epochs/batch size are asked for."""
        if algorithm:
            return algorithm
        if {"epochs", "batch_size"} & set(hyperparameters):
            return self.epoch_algorithm
        return self.default_algorithm
