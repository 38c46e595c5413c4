"""Routes of the training API under /api/v1/ (see training.views).

``model-types`` is looked up by slug; the registry nests its own routes under the same prefix
(``model-types/{slug}/versions/`` ...) in its own ``api_urls``.
"""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from training.views import DatasetSnapshotViewSet, ModelTypeViewSet, TrainingJobViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("model-types", ModelTypeViewSet, basename="model-type")
router.register("datasets", DatasetSnapshotViewSet, basename="dataset")
router.register("training/jobs", TrainingJobViewSet, basename="training-job")

urlpatterns = router.urls
