"""Every audit-trail inline registered in the admin is read-only, even for a superuser."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.db.models import Model
from django.test import RequestFactory

from learning_engine.admin_audit import AUDIT_FIELDS, AuditTrailInline
from tests.factories import UserFactory


def _audit_inlines() -> list[tuple[str, tuple[type[Model], type[AuditTrailInline]]]]:
    found = {
        f"{parent._meta.label}.{inline.__name__}": (parent, inline)
        for parent, model_admin in admin.site._registry.items()
        for inline in model_admin.inlines
        if issubclass(inline, AuditTrailInline)
    }
    return sorted(found.items())


AUDIT_INLINES = _audit_inlines()


def test_every_app_audit_trail_uses_the_shared_inline() -> None:
    parents = {name.rsplit(".", 1)[0] for name, _ in AUDIT_INLINES}
    assert parents >= {
        "cases.Case",
        "cases.DataDictionary",
        "training.DatasetSnapshot",
        "training.TrainingJob",
        "models_registry.ModelVersion",
        "models_registry.ABTest",
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("parent", "inline_class"), [pair for _, pair in AUDIT_INLINES], ids=[n for n, _ in AUDIT_INLINES]
)
def test_audit_trail_inline_offers_no_add_change_or_delete(
    parent: type[Model], inline_class: type[AuditTrailInline]
) -> None:
    request = RequestFactory().get("/")
    superuser: Any = UserFactory(is_staff=True, is_superuser=True)
    request.user = superuser
    inline = inline_class(parent, admin.site)
    assert inline.has_view_permission(request)
    assert not inline.has_add_permission(request, None)
    assert not inline.has_change_permission(request)
    assert not inline.has_delete_permission(request)
    assert inline.max_num == 0
    assert inline.can_delete is False
    assert set(inline.get_readonly_fields(request)) >= set(inline.get_fields(request))
    assert set(inline.get_fields(request)) <= set(AUDIT_FIELDS)
