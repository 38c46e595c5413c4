"""Revocation across real processes: a change made in one process refuses a token in a serving one.

The predict endpoints authenticate from the token and a cached credential state
(``learning_engine.stateless_auth``). A predictor process (`manage.py shell`, the throwaway site of
``test_processes``) predicts in a loop with four clients' tokens, its states warm; another
process then changes each client in turn: a password change, a deactivation, a lost role, a
logout (its refresh token blacklisted through the API). Every request started after a change has
returned must be refused with that change's code, and the requests before it answered: checked as
an ordering (request start versus change return), not as a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.models_registry.serving.factories import PNEUMONIA_FEATURES
from tests.models_registry.serving.test_processes import ROOT, Site, read_lines, wait_until

pytestmark = pytest.mark.slow

CLIENTS = ("password", "deactivated", "role", "logout")

SETUP = """
import json
from learning_engine.tokens import RefreshToken
from learning_engine import roles
from tests.factories import user_with_role
from tests.models_registry.serving.factories import served_version

served_version()
tokens = {}
for name in CLIENTS:
    user = user_with_role(roles.PREDICTION_CLIENT, username="client-" + name)
    refresh = RefreshToken.for_user(user)
    tokens[name] = {"user_id": user.pk, "access": str(refresh.access_token), "refresh": str(refresh)}
print(json.dumps(tokens))
""".replace("CLIENTS", repr(CLIENTS))

PREDICTOR = """
import json, os, time
from rest_framework.test import APIClient

tokens = json.loads(os.environ["SERVING_TOKENS"])
body = json.loads(os.environ["SERVING_BODY"])
stop, out = os.environ["SERVING_STOP"], open(os.environ["SERVING_OUT"], "a", buffering=1)
clients = {}
for name, token in tokens.items():
    clients[name] = APIClient()
    clients[name].credentials(HTTP_AUTHORIZATION="Bearer " + token["access"])
deadline = time.time() + 400
while not os.path.exists(stop) and time.time() < deadline:
    for name, client in clients.items():
        started = time.time()
        response = client.post("/api/v1/model-types/diagnosis/predict/", body, format="json")
        out.write(json.dumps({"client": name, "started": started, "status": response.status_code,
                              "code": response.json().get("code")}) + "\\n")
    time.sleep(0.005)
"""

CHANGE = """
import json, time
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

tokens = json.loads('''{tokens}''')
users = get_user_model().objects
returned = {{}}

user = users.get(pk=tokens["password"]["user_id"])
user.set_password("a-new-password-for-this-test")
user.save()
returned["password"] = time.time()
time.sleep(0.3)

user = users.get(pk=tokens["deactivated"]["user_id"])
user.is_active = False
user.save()
returned["deactivated"] = time.time()
time.sleep(0.3)

users.get(pk=tokens["role"]["user_id"]).groups.remove(Group.objects.get(name="prediction_client"))
returned["role"] = time.time()
time.sleep(0.3)

response = APIClient().post("/api/v1/auth/token/blacklist/", {{"refresh": tokens["logout"]["refresh"]}}, format="json")
assert response.status_code == 200, response.content
returned["logout"] = time.time()
print(json.dumps(returned))
"""

EXPECTED_CODE = {
    "password": "credentials_changed",
    "deactivated": "user_inactive",
    "role": "credentials_changed",
    "logout": "session_ended",
}


def test_a_change_in_one_process_refuses_the_token_in_a_serving_process_on_its_next_request(tmp_path):
    site = Site(tmp_path)
    site.manage("migrate", "--no-input", "-v", "0")
    tokens = site.python(SETUP)
    out, stop = tmp_path / "predictions.jsonl", tmp_path / "stop"
    predictor = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", PREDICTOR],
        cwd=ROOT,
        env={
            **site.env,
            "SERVING_TOKENS": json.dumps(tokens),
            "SERVING_BODY": json.dumps(PNEUMONIA_FEATURES),
            "SERVING_STOP": str(stop),
            "SERVING_OUT": str(out),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors = ""
    try:
        wait_until(lambda: len(read_lines(out)) >= 5 * len(CLIENTS), timeout=120, what="the predictor to warm up")
        returned = site.python(CHANGE.format(tokens=json.dumps(tokens)))
        last = max(returned.values())
        wait_until(
            lambda: sum(line["started"] > last for line in read_lines(out)) >= 3 * len(CLIENTS),
            timeout=300,
            what="predictions after the changes",
        )
    finally:
        stop.touch()
        try:
            _, errors = predictor.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            predictor.kill()
            _, errors = predictor.communicate()
        finally:
            print(errors[-3000:])  # shown by pytest when the test fails
    assert predictor.returncode == 0, errors

    lines = read_lines(out)
    for name in CLIENTS:
        mine = [line for line in lines if line["client"] == name]
        before = [line["status"] for line in mine if line["started"] < returned[name] - 0.5]
        after = [(line["status"], line["code"]) for line in mine if line["started"] > returned[name]]
        assert before, name
        assert set(before) == {200}, (name, before)
        assert len(after) >= 3, name
        assert set(after) == {(401, EXPECTED_CODE[name])}, f"{name}: a request after the change was answered: {after}"
