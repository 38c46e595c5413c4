"""The order of the /api/v1/ patterns: serving's come first (the busiest path is matched soonest),
which is only harmless while no other app's pattern matches a serving path."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLResolver, resolve
from django.urls.exceptions import Resolver404

from learning_engine import api
from models_registry.serving import urls as serving_urls
from models_registry.serving.views import FeedbackView, PredictBatchView, PredictView

SERVING_PATHS = {
    "model-types/diagnosis/predict/": PredictView,
    "model-types/predict/predict/": PredictView,
    "model-types/diagnosis/predict/batch/": PredictBatchView,
    "model-types/batch/predict/batch/": PredictBatchView,
    "predictions/7/feedback/": FeedbackView,
}


def test_serving_is_the_first_app_tried():
    includes = [pattern for pattern in api.urlpatterns if isinstance(pattern, URLResolver)]
    assert includes[0].urlconf_module is serving_urls


@pytest.mark.parametrize("path", sorted(SERVING_PATHS))
def test_no_other_apps_pattern_matches_a_serving_path(path):
    assert resolve(f"/api/v1/{path}").func.view_class is SERVING_PATHS[path]  # type: ignore[attr-defined]
    others: list[Any] = [p for p in api.urlpatterns if getattr(p, "urlconf_module", None) is not serving_urls]
    assert [str(pattern.pattern) for pattern in others if _matches(pattern, path)] == []


def _matches(pattern, path: str) -> bool:
    try:
        return pattern.resolve(path) is not None  # a plain pattern answers None, an include raises
    except Resolver404:
        return False
