"""Factories shared by every app's tests."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@hospital.test")
    password = factory.django.Password("pw-for-tests-only")
    is_active = True


def user_with_role(role: str | None = None, **kwargs: object) -> User:
    """A user in that role's group (None: no role)."""
    from django.contrib.auth.models import Group

    from learning_engine import roles

    user = UserFactory.create(**kwargs)
    if role:
        if not Group.objects.filter(name=role).exists():
            # A transactional test before this one flushed the tables the migrations filled.
            roles.sync_roles()
        user.groups.add(Group.objects.get(name=role))
    return user
