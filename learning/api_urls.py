"""Learning-loop routes under model-types/{slug}/ (read-only)."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from learning.views import LearningCycleViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.include_format_suffixes = False
router.register(
    r"model-types/(?P<slug>[-a-zA-Z0-9_]+)/learning-cycles", LearningCycleViewSet, basename="learning-cycle"
)

urlpatterns = router.urls
