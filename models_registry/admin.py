"""The app's admin, found by ``admin.autodiscover``: each layer's pages, in their packages."""

from __future__ import annotations

from models_registry.experiments import admin as experiments_admin  # noqa: F401
from models_registry.registry import admin as registry_admin  # noqa: F401
from models_registry.serving import admin as serving_admin  # noqa: F401
