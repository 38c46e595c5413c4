"""Serving routes: model-types/{slug}/predict/, .../predict/batch/, predictions/{id}/feedback/."""

from __future__ import annotations

urlpatterns: list = []
