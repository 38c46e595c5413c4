"""The Standard Webhooks signature, pinned to the reference libraries' published test vector."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

from alerts.models import new_secret
from alerts.webhooks import signed_headers

# The test vector every Standard Webhooks reference library checks (standard-webhooks/libraries); the
# specification's own header example publishes no secret, so it cannot be checked.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_matches_the_published_test_vector():
    headers = signed_headers(
        secret=VECTOR_SECRET,
        message_id=VECTOR_ID,
        body=VECTOR_BODY,
        now=dt.datetime.fromtimestamp(VECTOR_TIMESTAMP + 0.9, tz=dt.UTC),  # whole seconds are signed
    )
    assert headers == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }


def test_the_scheme_is_hmac_sha256_of_id_timestamp_and_body_with_the_decoded_secret():
    key = base64.b64decode(VECTOR_SECRET.removeprefix("whsec_"))
    signed = f"{VECTOR_ID}.{VECTOR_TIMESTAMP}.".encode() + VECTOR_BODY
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert expected == VECTOR_SIGNATURE


def test_a_timestamp_in_another_time_zone_signs_the_same_instant():
    other_zone = dt.datetime.fromtimestamp(VECTOR_TIMESTAMP, tz=dt.timezone(dt.timedelta(hours=5)))
    headers = signed_headers(secret=VECTOR_SECRET, message_id=VECTOR_ID, body=VECTOR_BODY, now=other_zone)
    assert headers["webhook-signature"] == VECTOR_SIGNATURE


def test_new_secrets_are_whsec_and_32_random_bytes():
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert first != second
