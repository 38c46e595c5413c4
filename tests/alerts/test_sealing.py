"""Webhook signing secrets are sealed at rest: the column never holds them, signing still works,
a SECRET_KEY rotation keeps them readable through the fallback, and the admin never shows one back."""

from __future__ import annotations

import base64
import datetime as dt
import importlib
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from standardwebhooks.webhooks import Webhook

from alerts import sealing
from alerts.models import AlertReceiver, new_secret
from alerts.webhooks import signed_headers
from learning_engine import roles

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.org/engine"
OTHER_KEY = "k" * 20 + "another-secret-key-for-the-rotation-test-0123456789"


def stored_column(receiver: AlertReceiver) -> str:
    """What the database row holds, read past the model."""
    table = AlertReceiver._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secret_sealed FROM {table} WHERE id = %s", [receiver.pk])
        return str(cursor.fetchone()[0])


def test_the_database_column_does_not_hold_the_secret():
    receiver = AlertReceiver.objects.create(name="hook", kind="webhook", url=URL)
    secret = receiver.secret

    column = stored_column(receiver)

    assert secret.startswith("whsec_")
    assert secret not in column
    assert secret.removeprefix("whsec_") not in column
    assert base64.b64decode(secret.removeprefix("whsec_")).hex() not in column
    assert column.startswith(sealing.PREFIX)
    assert AlertReceiver.objects.get(pk=receiver.pk).secret == secret


def test_a_rotated_secret_is_sealed_too():
    receiver = AlertReceiver.objects.create(name="hook", kind="webhook", url=URL)

    secret = receiver.rotate_secret()

    assert secret not in stored_column(receiver)
    assert AlertReceiver.objects.get(pk=receiver.pk).secret == secret


def test_a_standard_webhooks_receiver_verifies_what_the_unsealed_secret_signs():
    receiver = AlertReceiver.objects.create(name="hook", kind="webhook", url=URL)
    stored = AlertReceiver.objects.get(pk=receiver.pk)
    body = b'{"type":"alert.test"}'
    now = dt.datetime.now(dt.UTC)
    headers = signed_headers(secret=stored.secret, message_id="msg_1", body=body, now=now)

    assert Webhook(receiver.secret).verify(body, headers) == {"type": "alert.test"}


def test_the_data_migration_seals_a_plain_secret_left_by_the_old_schema():
    receiver = AlertReceiver.objects.create(name="hook", kind="webhook", url=URL)
    plain = new_secret()
    AlertReceiver.objects.filter(pk=receiver.pk).update(secret_sealed=plain)  # as 0003 stored it
    migration = importlib.import_module("alerts.migrations.0004_seal_webhook_secrets")

    migration.seal_existing(django_apps, None)
    migration.seal_existing(django_apps, None)  # twice: a sealed row is left as it is

    assert plain not in stored_column(receiver)
    assert AlertReceiver.objects.get(pk=receiver.pk).secret == plain
    migration.open_existing(django_apps, None)
    assert stored_column(receiver) == plain


def test_after_a_secret_key_rotation_the_fallback_opens_and_the_command_reseals(settings):
    receiver = AlertReceiver.objects.create(name="hook", kind="webhook", url=URL)
    secret = receiver.secret
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OTHER_KEY, [old_key]

    assert AlertReceiver.objects.get(pk=receiver.pk).secret == secret
    call_command("reseal_webhook_secrets")

    settings.SECRET_KEY_FALLBACKS = []
    assert AlertReceiver.objects.get(pk=receiver.pk).secret == secret


def test_a_secret_no_key_opens_is_reported_not_guessed(settings, capsys):
    receiver = AlertReceiver.objects.create(name="hook", kind="webhook", url=URL)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OTHER_KEY, []

    stored = AlertReceiver.objects.get(pk=receiver.pk)
    with pytest.raises(sealing.SecretUnreadable):
        _ = stored.secret
    assert stored.secret_fingerprint() == "unreadable"
    with pytest.raises(CommandError, match="rotate them in the admin"):
        call_command("reseal_webhook_secrets")


# --- The admin: write-only --------------------------------------------------------------------------


def change_form(receiver: AlertReceiver, **overrides: Any) -> dict[str, Any]:
    form = {"name": receiver.name, "kind": "webhook", "url": URL, "email_to": "", "model_types": "", "active": "on"}
    form.update(overrides)
    return form


def test_the_change_form_says_set_and_never_shows_the_secret_or_its_sealed_form(staff):
    lead, _ = staff(roles.CLINICAL_LEAD)
    receiver = AlertReceiver.objects.create(name="hook", kind="webhook", url=URL)

    page = lead.get(reverse("admin:alerts_alertreceiver_change", args=[receiver.pk])).content.decode()

    assert "set (sha256:" in page
    assert receiver.secret not in page
    assert receiver.secret.removeprefix("whsec_") not in page
    assert receiver.secret_sealed.removeprefix(sealing.PREFIX)[:40] not in page
    assert 'name="new_secret"' in page


def test_a_typed_secret_replaces_the_stored_one_and_is_not_shown_back(staff):
    lead, _ = staff(roles.CLINICAL_LEAD)
    receiver = AlertReceiver.objects.create(name="hook", kind="webhook", url=URL)
    typed = new_secret()
    url = reverse("admin:alerts_alertreceiver_change", args=[receiver.pk])

    response = lead.post(url, change_form(receiver, new_secret=typed))

    assert response.status_code == 302
    assert AlertReceiver.objects.get(pk=receiver.pk).secret == typed
    assert typed not in stored_column(receiver)
    assert typed not in lead.get(url).content.decode()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"new_secret": "whsec_bm90IGJhc2U2NA"}, "24 to 64 bytes"),
        ({"new_secret": "plain-password-0123456789012345678901234567890"}, "24 to 64 bytes"),
        (
            {"kind": "email", "url": "", "email_to": "lead@hospital.example", "new_secret": new_secret()},
            "Only a webhook",
        ),
    ],
)
def test_a_bad_typed_secret_is_refused_without_echoing_it(staff, overrides, message):
    lead, _ = staff(roles.CLINICAL_LEAD)
    receiver = AlertReceiver.objects.create(name="hook", kind="webhook", url=URL)
    before = receiver.secret

    response = lead.post(
        reverse("admin:alerts_alertreceiver_change", args=[receiver.pk]), change_form(receiver, **overrides)
    )

    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors["new_secret"])
    assert overrides["new_secret"] not in response.content.decode()
    assert AlertReceiver.objects.get(pk=receiver.pk).secret == before


def test_an_engineer_without_the_permission_cannot_open_the_receiver(make_user, client):
    receiver = AlertReceiver.objects.create(name="hook", kind="webhook", url=URL)
    client.force_login(make_user(roles.ML_ENGINEER, is_staff=True))

    response = client.get(reverse("admin:alerts_alertreceiver_change", args=[receiver.pk]))

    assert response.status_code == 403
