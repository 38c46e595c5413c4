"""Serving routes: model-types/{slug}/predict/, .../predict/batch/, predictions/{id}/feedback/."""

from __future__ import annotations

from django.urls import path

from models_registry.serving.views import FeedbackView, PredictBatchView, PredictView

urlpatterns = [
    path("model-types/<slug:slug>/predict/", PredictView.as_view(), name="predict"),
    path("model-types/<slug:slug>/predict/batch/", PredictBatchView.as_view(), name="predict-batch"),
    path("predictions/<int:pk>/feedback/", FeedbackView.as_view(), name="prediction-feedback"),
]
