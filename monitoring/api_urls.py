"""Monitoring routes under ``model-types/{slug}/`` (included by ``learning_engine.api``)."""

from __future__ import annotations

from django.urls import path

from monitoring.views import MonitoringView

urlpatterns = [
    path("model-types/<slug:slug>/monitoring/", MonitoringView.as_view(), name="model-type-monitoring"),
]
