from __future__ import annotations

from django.conf import settings


def test_throttle_rates_come_from_the_environment_and_a_malformed_one_stops_start_up():
    import os
    import subprocess
    import sys

    env = {**os.environ, "THROTTLE_TOKEN_RATE": "lots", "DJANGO_SETTINGS_MODULE": "learning_engine.settings"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True, check=False
    )

    assert result.returncode != 0
    assert "THROTTLE_TOKEN_RATE must look like 30/min" in result.stderr
    assert settings.THROTTLE_RATES["token"] == os.environ["THROTTLE_TOKEN_RATE"]
    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == int(os.environ.get("NUM_PROXIES", "0"))
