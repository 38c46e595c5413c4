from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from learning_engine import roles


@pytest.mark.django_db
def test_the_migration_creates_every_role_with_exactly_its_permissions():
    for role, names in roles.ROLE_PERMISSIONS.items():
        group = Group.objects.get(name=role)
        have = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
        assert have == set(names), role


@pytest.mark.django_db
def test_only_clinicians_hold_the_phi_permission(make_user):
    holders = [role for role in roles.ROLES if make_user(role).has_perm(roles.PERM_VIEW_PHI)]
    assert holders == [roles.CLINICIAN]


@pytest.mark.django_db
def test_sync_roles_is_idempotent_and_repairs_drift():
    group = Group.objects.get(name=roles.ML_ENGINEER)
    group.permissions.clear()
    roles.sync_roles(strict=True)
    roles.sync_roles(strict=True)
    assert group.permissions.count() == len(roles.ROLE_PERMISSIONS[roles.ML_ENGINEER])
