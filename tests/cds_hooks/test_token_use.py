"""A service call's jti (issue 17): written in the prediction log's transaction when the call is
answered with a prediction (one commit per call), on its own on any other answer; a token is
refused the second time whichever answer the first use had, and a replay never predicts."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cds_hooks import auth, views
from cds_hooks.models import UsedToken
from models_registry.models import Prediction
from tests.cds_hooks.calls import call, prefetch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_serving", "cold_keys")]

SERVICE = "/cds-services/patient-view-diagnosis"


def replayed(response) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["code"] == "token_replayed"


@pytest.fixture(autouse=True)
def _no_sweep(monkeypatch) -> None:
    monkeypatch.setattr(auth, "_last_sweep", time.monotonic())  # no DELETE of expired jtis in these calls


def test_a_successful_call_writes_its_jti_and_its_log_rows_in_one_commit(ehr, version, monkeypatch):
    commits: list[int] = []
    real_commit = connection.commit

    def commit() -> None:
        commits.append(1)
        real_commit()

    monkeypatch.setattr(connection, "commit", commit)
    outside: list[str] = []

    def writes_in_a_transaction(execute, sql, params, many, context):
        if not sql.startswith(("SELECT", "BEGIN")) and not connection.in_atomic_block:
            outside.append(sql)  # in autocommit: a commit of its own
        return execute(sql, params, many, context)

    token = ehr.token(SERVICE)
    with connection.execute_wrapper(writes_in_a_transaction), CaptureQueriesContext(connection) as captured:
        response = ehr.api(token).post(SERVICE, call(), format="json")
    assert response.status_code == 200, response.content
    assert outside == []
    assert len(commits) == 1
    inserts = [query["sql"].split('"')[1] for query in captured.captured_queries if query["sql"].startswith("INSERT")]
    assert inserts[:2] == ["cds_hooks_usedtoken", "models_registry_prediction"]
    assert UsedToken.objects.filter(client=ehr.client, jti=auth._parsed(token)[1]["jti"]).exists()
    replayed(ehr.api(token).post(SERVICE, call(), format="json"))
    assert Prediction.objects.count() == 1


def test_a_jti_used_by_a_concurrent_call_meanwhile_is_refused_and_nothing_is_logged(ehr, version, monkeypatch):
    """The other call's INSERT lands between this call's token check and its log: the unique
    constraint refuses this one in the log's transaction, which is rolled back."""
    token = ehr.token(SERVICE)
    jti = auth._parsed(token)[1]["jti"]
    read_prefetch = views.read_prefetch

    def meanwhile(*args, **kwargs):
        UsedToken.objects.create(client=ehr.client, jti=jti, expires_at="2100-01-01T00:00:00Z")
        return read_prefetch(*args, **kwargs)

    monkeypatch.setattr(views, "read_prefetch", meanwhile)
    replayed(ehr.api(token).post(SERVICE, call(), format="json"))
    assert not Prediction.objects.exists()
    assert UsedToken.objects.count() == 1


def _missing_prefetch():
    _, data = prefetch()
    del data["patient"]
    return call(prefetch=data)


def _too_little_data():
    return call(prefetch=prefetch(null=("temperature_c", "heart_rate", "respiratory_rate", "spo2", "wbc"))[1])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (_missing_prefetch, 412),
        (lambda: {**call(), "hookInstance": 7}, 400),
        (_too_little_data, 200),  # a card saying what is missing: nothing predicted
    ],
    ids=["412", "400", "refused-record-card"],
)
def test_an_answer_without_a_prediction_spends_the_token_too(ehr, version, body, status):
    token = ehr.token(SERVICE)
    assert ehr.api(token).post(SERVICE, body(), format="json").status_code == status
    assert UsedToken.objects.filter(client=ehr.client, jti=auth._parsed(token)[1]["jti"]).exists()
    replayed(ehr.api(token).post(SERVICE, call(), format="json"))  # the body is not signed
    assert not Prediction.objects.exists()


def test_a_used_token_sent_with_a_bad_body_is_a_replay_not_a_400(ehr, version):
    token = ehr.token(SERVICE)
    assert ehr.api(token).post(SERVICE, call(), format="json").status_code == 200
    replayed(ehr.api(token).post(SERVICE, _missing_prefetch(), format="json"))


def test_a_server_error_spends_the_token_too(ehr, version, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("broken")

    monkeypatch.setattr(views, "serve", broken)
    token = ehr.token(SERVICE)
    with pytest.raises(RuntimeError):
        ehr.api(token).post(SERVICE, call(), format="json")
    assert UsedToken.objects.filter(client=ehr.client, jti=auth._parsed(token)[1]["jti"]).exists()


def test_an_observer_failure_still_writes_the_jti_with_the_log_rows(ehr, version, monkeypatch):
    """``serve`` rolls back and writes again without the observers: the jti is written again too."""
    from models_registry.serving import serve

    def failing(rows):
        def write():  # inside the log's transaction: it is rolled back and written again without it
            raise RuntimeError("observer down")

        return write

    monkeypatch.setattr(serve, "_INPUT_OBSERVERS", [failing])
    token = ehr.token(SERVICE)
    assert ehr.api(token).post(SERVICE, call(), format="json").status_code == 200
    assert Prediction.objects.count() == 1
    assert UsedToken.objects.filter(client=ehr.client, jti=auth._parsed(token)[1]["jti"]).exists()
    replayed(ehr.api(token).post(SERVICE, call(), format="json"))
