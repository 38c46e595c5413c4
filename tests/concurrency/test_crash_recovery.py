"""Crash recovery with real processes on PostgreSQL: a killed worker, a restarted web process, a
database outage under a running worker.

In each case the job ends completed, requeued or failed with a reason, never stuck in running,
and no dataset, version or audit row is lost or duplicated. The training job is a small MLP run
for many epochs on a tiny snapshot: slow enough (seconds) to be interrupted mid-training.

The database outage comes two ways: the worker's server connections terminated
(``pg_terminate_backend`` on its ``application_name``, what a worker sees on a failover), and a
real restart of the local PostgreSQL server (``pg_ctlcluster ... restart``, when this process is
root on the server's machine and no other test process runs beside it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections

from learning_engine import roles
from models_registry.models import ModelVersion
from tests.concurrency.conftest import Site, free_port, wait_until, worker_args
from tests.concurrency.test_races import token_for
from tests.factories import user_with_role
from tests.models_registry.registry.factories import ready_snapshot
from tests.training.factories import ModelTypeFactory
from training.models import DatasetSnapshot, JobTransition, TrainingJob
from training.reaper import reap_stale_jobs

SLOW_JOB: dict[str, Any] = {
    "algorithm": "mlp",
    "hyperparameters": {"epochs": 300, "batch_size": 4, "hidden_layers": [256, 256]},
}
STALE_SECONDS = 3


@pytest.fixture
def fast_reaper(settings: Any) -> None:
    # The reaper chain is scheduled by whoever enqueues a job, with its settings.
    settings.JOB_STALE_SECONDS = STALE_SECONDS
    settings.REAPER_INTERVAL_SECONDS = 1


@pytest.fixture
def snapshot() -> DatasetSnapshot:
    kind = ModelTypeFactory.create(diagnosis=True, min_cases_to_train=10)
    return ready_snapshot(kind, by=user_with_role(roles.ML_ENGINEER), seed=5)


def creator_of(snapshot: DatasetSnapshot) -> User:
    assert snapshot.created_by is not None
    return snapshot.created_by


def submit(snapshot: DatasetSnapshot) -> TrainingJob:
    return TrainingJob.submit(model_type=snapshot.model_type, by=creator_of(snapshot), dataset=snapshot, **SLOW_JOB)


def job(job_id: int) -> TrainingJob:
    return TrainingJob.objects.get(pk=job_id)


def training(job_id: int) -> bool:
    current = job(job_id)
    return current.status == TrainingJob.Status.RUNNING and len(current.history) >= 3


def finished(job_id: int) -> TrainingJob | None:
    current = job(job_id)
    return current if current.is_finished else None


def assert_nothing_lost_or_duplicated(job_id: int) -> None:
    """One snapshot; one version exactly when the job completed; one audit row per attempt's start."""
    current = job(job_id)
    assert DatasetSnapshot.objects.count() == 1
    if current.status == TrainingJob.Status.COMPLETED:
        # The worker registers the version on commit, after the job reads completed: wait for it.
        wait_until(
            lambda: ModelVersion.objects.filter(job_id=job_id).exists(),
            timeout=120,
            what="the registry to register the completed job",
        )
    versions = ModelVersion.objects.filter(job_id=job_id).count()
    assert versions == (1 if current.status == TrainingJob.Status.COMPLETED else 0)
    edges = Counter(JobTransition.objects.filter(job_id=job_id).values_list("from_state", "to_state"))
    assert edges["", "queued"] == 1
    assert edges["queued", "running"] == current.attempts
    assert edges["running", "completed"] == (1 if current.status == TrainingJob.Status.COMPLETED else 0)


def test_a_worker_killed_mid_training_is_reaped_and_a_second_worker_completes_the_job(
    site: Site, database_queue: None, fast_reaper: None, snapshot: DatasetSnapshot
) -> None:
    job_id = submit(snapshot).pk
    first = site.start(worker_args(), name="worker-killed")
    wait_until(lambda: training(job_id), timeout=300, what="the first worker to train")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    time.sleep(STALE_SECONDS + 1)

    # The reaper runs here (not in a worker) so that the requeue is seen before anyone retakes it.
    assert reap_stale_jobs()["requeued"] == [job_id]
    assert job(job_id).status == TrainingJob.Status.QUEUED

    site.start(worker_args(), name="worker-second")
    done = wait_until(lambda: finished(job_id), timeout=600, what="the second worker to finish the job")
    assert done.status == TrainingJob.Status.COMPLETED, done.error_log
    assert done.attempts == 2
    assert "requeued" in done.error_log
    assert len(done.history) == SLOW_JOB["hyperparameters"]["epochs"]
    assert_nothing_lost_or_duplicated(job_id)


class Web:
    """``manage.py runserver`` as a real web process on a free port, with a JSON client."""

    def __init__(self, site: Site) -> None:
        self.site, self.port, self.starts = site, free_port(), 0
        self.process: Any = None

    def start(self) -> None:
        self.starts += 1
        args = ["manage.py", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{self.port}"]
        self.process = self.site.start(args, name=f"web-{self.starts}")
        wait_until(self.answers, timeout=120, what="the web process to answer")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def answers(self) -> bool:
        try:
            self.call("GET", "/api/v1/health/")
        except OSError:
            return False
        return True

    def call(self, method: str, path: str, token: str = "", body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


def test_the_web_process_restarted_while_a_job_runs_leaves_the_job_completing_and_the_api_answering(
    site: Site, snapshot: DatasetSnapshot
) -> None:
    token = token_for(snapshot.created_by)
    web = Web(site)
    web.start()
    site.start(worker_args(), name="worker")
    status, created = web.call(
        "POST", "/api/v1/training/jobs/", token, {"model_type": "diagnosis", "dataset": snapshot.pk, **SLOW_JOB}
    )
    assert status in {201, 202}, created
    job_id = created["id"]
    wait_until(lambda: training(job_id), timeout=300, what="the worker to train")

    web.kill()
    assert not web.answers()
    web.start()

    def completed_through_the_api() -> dict[str, Any] | None:
        status, body = web.call("GET", f"/api/v1/training/jobs/{job_id}/", token)
        assert status == 200, body
        return body if body["status"] in {"completed", "failed", "cancelled"} else None

    body = wait_until(completed_through_the_api, timeout=600, what="the job to finish", every=0.5)
    assert body["status"] == "completed", body
    assert job(job_id).attempts == 1
    # The worker registers the version on commit, after the job reads completed: wait for it.
    wait_until(
        lambda: ModelVersion.objects.filter(job_id=job_id).exists(),
        timeout=120,
        what="the registry to register the completed job",
    )
    status, versions = web.call("GET", "/api/v1/model-types/diagnosis/versions/", token)
    assert status == 200
    listed = versions["results"] if isinstance(versions, dict) else versions
    assert len(listed) == 1
    assert_nothing_lost_or_duplicated(job_id)


def terminate_connections(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            [application_name],
        )
        (count,) = cursor.fetchone()
    return int(count)


def test_a_database_outage_under_a_running_worker_never_leaves_the_job_running(
    site: Site, database_queue: None, fast_reaper: None, snapshot: DatasetSnapshot
) -> None:
    job_id = submit(snapshot).pk
    # Persistent connections (as a deployment would configure them), so that the idle worker below
    # holds one too.
    worker = site.start(worker_args(), name="worker-outage", DATABASE_CONN_MAX_AGE="600")
    wait_until(lambda: training(job_id), timeout=300, what="the worker to train")

    assert terminate_connections("worker-outage") >= 1

    done = wait_until(lambda: finished(job_id), timeout=600, what="the job to end after the outage", every=0.5)
    assert done.status in {TrainingJob.Status.COMPLETED, TrainingJob.Status.FAILED}
    assert_nothing_lost_or_duplicated(job_id)

    if done.status == TrainingJob.Status.FAILED:
        assert "connection" in done.error_log, done.error_log

    # The worker outlived the outage, and a second one while it waited for work: it takes and
    # completes the next job.
    assert worker.poll() is None, site.log("worker-outage")[-3000:]
    assert terminate_connections("worker-outage") >= 1
    next_id = TrainingJob.submit(
        model_type=snapshot.model_type, by=creator_of(snapshot), dataset=snapshot, algorithm="logistic_regression"
    ).pk

    def next_finished() -> TrainingJob | None:
        assert worker.poll() is None, site.log("worker-outage")[-3000:]
        return finished(next_id)

    after = wait_until(next_finished, timeout=300, what="the next job")
    assert after.status == TrainingJob.Status.COMPLETED, after.error_log


def local_cluster() -> tuple[str, str] | None:
    """(version, name) of the Debian PostgreSQL cluster this suite runs on, when this process may
    restart it (root, pg_ctlcluster, the server on this machine); else None."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if os.geteuid() != 0 or shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        return None
    if (database.get("HOST") or "localhost") not in {"localhost", "127.0.0.1", "::1"}:
        return None
    port = str(database.get("PORT") or 5432)
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == port and fields[3] == "online":
            return fields[0], fields[1]
    return None


def server_answers() -> bool:
    import psycopg
    from django.conf import settings

    database = settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=database.get("HOST") or None,
            port=database.get("PORT") or None,
            user=database.get("USER") or None,
            dbname=database["NAME"],
            connect_timeout=2,
        ).close()
    except psycopg.Error:
        return False
    return True


@pytest.mark.skipif(
    bool(os.environ.get("PYTEST_XDIST_WORKER")), reason="restarts the server: never beside other test processes"
)
def test_a_real_postgresql_restart_under_a_running_worker_never_leaves_the_job_running(
    site: Site, database_queue: None, fast_reaper: None, snapshot: DatasetSnapshot
) -> None:
    cluster = local_cluster()
    if cluster is None:
        pytest.skip("restarting PostgreSQL needs root, pg_ctlcluster and the server on this machine")
    job_id = submit(snapshot).pk
    worker = site.start(worker_args(), name="worker-restart", DATABASE_CONN_MAX_AGE="600")
    wait_until(lambda: training(job_id), timeout=300, what="the worker to train")

    connections.close_all()  # this process's own connection goes down with the server too
    restart = subprocess.run(
        ["pg_ctlcluster", *cluster, "restart", "-m", "fast"], capture_output=True, text=True, timeout=120, check=False
    )
    assert restart.returncode == 0, restart.stdout + restart.stderr
    wait_until(server_answers, timeout=60, what="PostgreSQL to answer again", every=0.5)

    # Completed (the worker reconnected between epochs), failed with the connection error, or
    # requeued by the reaper and completed on a later attempt: never left running.
    done = wait_until(lambda: finished(job_id), timeout=600, what="the job to end after the restart", every=0.5)
    assert done.status in {TrainingJob.Status.COMPLETED, TrainingJob.Status.FAILED}
    if done.status == TrainingJob.Status.FAILED:
        assert "connection" in done.error_log.lower() or "terminat" in done.error_log.lower(), done.error_log
    assert_nothing_lost_or_duplicated(job_id)

    # The same worker survived the restart and takes the next job.
    assert worker.poll() is None, site.log("worker-restart")[-3000:]
    next_id = TrainingJob.submit(
        model_type=snapshot.model_type, by=creator_of(snapshot), dataset=snapshot, algorithm="logistic_regression"
    ).pk
    after = wait_until(lambda: finished(next_id), timeout=300, what="the next job after the restart")
    assert after.status == TrainingJob.Status.COMPLETED, after.error_log
