from __future__ import annotations

from rest_framework.routers import DefaultRouter

from cases.views import CaseViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("cases", CaseViewSet, basename="case")

urlpatterns = router.urls
