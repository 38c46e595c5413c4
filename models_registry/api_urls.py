"""Registry routes (versions, performance, history, compare, A/B tests) under model-types/{slug}/."""

from __future__ import annotations

urlpatterns: list = []
