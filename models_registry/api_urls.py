"""Registry routes (versions, performance, history, compare, rollback, A/B tests) under model-types/{slug}/.

Versions nest under training's ``model-types/{slug}/`` prefix (see ``models_registry.registry.views``).
The model-type-level viewset serves only its extra actions (rollback, history, compare): it has no
list or retrieve, so the router makes no route that would shadow training's model-type detail.
"""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from models_registry.experiments.views import ABTestViewSet
from models_registry.registry.views import ModelVersionViewSet, RegistryModelTypeViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.include_format_suffixes = False  # version labels contain dots ("v1.2.0")
router.register(r"model-types/(?P<slug>[-a-zA-Z0-9_]+)/versions", ModelVersionViewSet, basename="model-version")
router.register(r"model-types/(?P<slug>[-a-zA-Z0-9_]+)/ab-tests", ABTestViewSet, basename="ab-test")
router.register("model-types", RegistryModelTypeViewSet, basename="model-type-registry")

urlpatterns = router.urls
