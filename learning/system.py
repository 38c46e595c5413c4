"""The learning loop's own account: the author of what a cycle creates (datasets, training jobs,
A/B tests), since those rows name a user. Inactive with an unusable password: nobody logs in as
it. Being the jobs' creator, it is one of every candidate's actors, so the two-person rule never
lets it approve one (``ModelVersion.actor_ids``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model

if TYPE_CHECKING:
    from learning_engine.actors import Actor

LOOP_USERNAME = "learning-loop"


def loop_user() -> Actor:
    """The account (created by migration ``learning.0002``; made again here if it was removed)."""
    user, _ = get_user_model().objects.get_or_create(
        username=LOOP_USERNAME, defaults={"is_active": False, "first_name": "Learning loop"}
    )
    if user.has_usable_password():
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user
