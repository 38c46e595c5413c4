"""The acting user a view hands to a domain method (learning_engine.actors)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser

from learning_engine.actors import request_actor


def test_a_view_hands_over_its_authenticated_user():
    user = SimpleNamespace(is_authenticated=True)
    assert request_actor(SimpleNamespace(user=user)) is user


@pytest.mark.parametrize("user", [AnonymousUser(), None, SimpleNamespace()])
def test_an_anonymous_user_never_acts(user):
    with pytest.raises(PermissionError):
        request_actor(SimpleNamespace(user=user))
