from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from learning_engine.landing import ApiRootView, landing
from learning_engine.lockout import admin_password_change

admin.site.site_header = "Clinical diagnosis engine"
admin.site.site_title = "Clinical diagnosis engine"
admin.site.index_title = "Administration"
# The old password of "Change password" counts toward the login lockout (learning_engine.lockout).
admin.site.password_change = admin_password_change  # type: ignore[method-assign,assignment]

urlpatterns = [
    path("", landing, name="landing"),
    path("admin/", admin.site.urls),
    path("api/v1/", ApiRootView.as_view(), name="api-root"),
    path("api/v1/", include("learning_engine.api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # CDS Hooks 2.0 (cds_hooks/): {baseUrl}/cds-services, as the specification names it.
    path("", include("cds_hooks.urls")),
]

handler400 = "learning_engine.exceptions.handler400"
handler403 = "learning_engine.exceptions.handler403"
handler404 = "learning_engine.exceptions.handler404"
handler500 = "learning_engine.exceptions.handler500"
