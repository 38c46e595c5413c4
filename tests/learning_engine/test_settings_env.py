from __future__ import annotations

from django.conf import settings


def test_tests_run_with_the_test_keys_not_the_dev_defaults():
    assert settings.SECRET_KEY.startswith("test-secret-key-")
    assert settings.DEBUG is False
