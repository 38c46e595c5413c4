"""Predict over HTTP through the production server, against a bare WSGI app serving the same model.

Both run under gunicorn with 2 workers of the project's worker class and threads
(``learning_engine/gunicorn_conf.py``: gthread, 4 threads; ``benchmarks.bare_wsgi`` for the bare
app), on the run's SQLite database (``DATABASE_URL`` set by the harness), or a PostgreSQL database
of the run's own with ``BENCH_POSTGRES_URL``.
The model: a logistic regression on synthetic respiratory encounters, registered and activated as
on a site. One client program (threads, a new TCP connection per request, as a hospital system
that does not keep connections) drives the servers at 1, 8 and 32 concurrent clients, taking turns
in rounds of 100 requests each (``drive_in_turns``), so that a change in the machine's load during
the run falls on every server alike.

- project: ``POST /api/v1/model-types/<slug>/predict/`` with a JWT: authentication, throttle,
  routing, validation, de-identification, features, ``predict_proba``, the log row committed, JSON.
- bare: the record's feature dict in, ``predict_proba`` out; no auth, no log.

Printed: p50, p99, throughput and errors side by side. Goals (issue 16): p50 at most 1.3x the bare
app's at 1 client, throughput at 8 clients at least 0.7x (the row shows bare / project, goal
<= 1.43x). A count check: every answered prediction has its log row. On a machine shared with other
work (the 2-core machine under other engineers' tests) the figures are indicative only.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Result, scaled, workdir

ORDER = 60
SLUG = "bench-http"
PASSWORD = "bench-http-client-password-2026"
REQUESTS = 400  # per server and level
ROUND = 100  # requests per server before the next server's turn
LEVELS = (1, 8, 32)
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _active_version() -> tuple[Any, Any]:
    """Train, register, approve and activate a version; the prediction client and the version."""

    from benchmarks.bench_predict import active_version

    return active_version("bench-http", slug=SLUG, name="HTTP benchmark", rows=2000, seed=21, client_password=PASSWORD)


class Server:
    """gunicorn with 2 workers (or ``command``) on a free port, started and stopped by this benchmark."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], command: list[str] | None = None) -> None:
        self.name = name
        self.port = _free_port()
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        self.log = open(workdir() / f"{name}.log", "wb")  # noqa: SIM115 -- closed in stop()
        if command is None:
            command = [gunicorn, *args, "--bind", f"127.0.0.1:{self.port}", "--workers", "2"]
        else:
            command = [*command, "--port", str(self.port)]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**env, "WEB_CONCURRENCY": "2"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, path: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited; see {self.log.name}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", path)
                connection.getresponse().read()
                connection.close()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{self.name} server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # a new connection each time
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def drive(
    port: int, path: str, bodies: list[bytes], headers: dict[str, str], clients: int, total: int
) -> dict[str, Any]:
    """``total`` requests from ``clients`` threads: p50 and p99 (ms), throughput, answers by status."""
    return _figures(_round(port, path, bodies, headers, clients, total), total)


def drive_in_turns(
    targets: dict[str, tuple[Any, str, list[bytes], dict[str, str]]], clients: int, total: int
) -> dict[str, dict[str, Any]]:
    """``total`` requests per server from ``clients`` threads, the servers taking turns in rounds of
    ``ROUND`` requests (not one whole block each): a machine whose load changes during the run
    (other engineers' work on the shared 2-core machine) weighs on every server alike."""
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    done = 0
    while done < total:
        size = min(ROUND, total - done)
        for name, (server, path, bodies, extra) in targets.items():
            rounds[name].append(_round(server.port, path, bodies, extra, clients, size, offset=done))
        done += size
    figures = {}
    for name, parts in rounds.items():
        merged = {
            "latencies": [latency for part in parts for latency in part["latencies"]],
            "statuses": {},
            "wall": sum(part["wall"] for part in parts),
        }
        for part in parts:
            for status, count in part["statuses"].items():
                merged["statuses"][status] = merged["statuses"].get(status, 0) + count
        figures[name] = _figures(merged, total)
    return figures


def _figures(measured: dict[str, Any], total: int) -> dict[str, Any]:
    latencies = sorted(measured["latencies"])
    statuses = measured["statuses"]
    return {
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "throughput": total / measured["wall"],
        "ok": statuses.get(200, 0),
        "errors": total - statuses.get(200, 0),
        "statuses": statuses,
    }


def _round(
    port: int, path: str, bodies: list[bytes], headers: dict[str, str], clients: int, total: int, offset: int = 0
) -> dict[str, Any]:
    """``total`` requests from ``clients`` threads: latencies (s), answers by status, wall time (s)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                status, _ = _post(port, path, bodies[(offset + i) % len(bodies)], headers)
            except OSError:
                status = 0
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "statuses": statuses, "wall": time.perf_counter() - start}


# MLflow's model server, when MLFLOW_PYTHON names the python of a virtualenv with mlflow (never the
# project's: it is not a dependency). It serves the kind of model issue 16 measured it with, a
# StandardScaler + LogisticRegression on the Breast Cancer Wisconsin data, saved by MLflow with
# predict_proba as its predict function; the project serves its respiratory logistic regression
# (a DictVectorizer, scaler and logistic regression): one record, one predict_proba, in both.
MLFLOW_SAVE = """
import sys
import mlflow.sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
mlflow.sklearn.save_model(model, sys.argv[1], pyfunc_predict_fn="predict_proba", input_example=X.iloc[:1])
"""


def _mlflow_server(env: dict[str, str]) -> tuple[Server, list[bytes]] | None:
    python = os.environ.get("MLFLOW_PYTHON")
    if not python:
        return None
    model = workdir() / "mlflow-model"
    subprocess.run([python, "-c", MLFLOW_SAVE, str(model)], check=True, capture_output=True, timeout=300)
    bin_dir = str(Path(python).parent)
    mlflow_env = {
        **env,
        "PATH": f"{bin_dir}:{env.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"file://{workdir()}/mlruns",
    }
    command = [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local"]
    server = Server("mlflow", [], mlflow_env, command=[*command, "-w", "2", "-h", "127.0.0.1"])
    return server, [(model / "serving_input_example.json").read_bytes()]


def run() -> list[Result]:
    from benchmarks.bench_predict import _compact, _rows_and_records
    from models_registry.models import Prediction
    from models_registry.serving.inputs import prediction_input
    from training.features import features

    client_user, version = _active_version()
    env = {
        **os.environ,
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "THROTTLE_PREDICT_RATE": "100000000/min",
        "THROTTLE_TOKEN_RATE": "1000/min",
        "JWT_ACCESS_MINUTES": "120",
        "CACHE_DIR": str(workdir() / "cache"),
        "BENCH_ARTIFACT": version.artifact,
        "BENCH_ARTIFACT_SHA256": version.artifact_sha256,
    }
    _, records = _rows_and_records(50, seed=22)
    compact = [_compact(record) for record in records]
    project_bodies = [json.dumps(record).encode() for record in compact]

    project = Server("project", ["--config", str(ROOT / "learning_engine" / "gunicorn_conf.py")], env)
    # The bare app under the project's worker class and threads (gunicorn_conf), so the difference
    # is the project's per-request work, not the server's.
    from learning_engine import gunicorn_conf

    bare = Server(
        "bare",
        [
            "benchmarks.bare_wsgi:application",
            "--access-logfile",
            "/dev/null",
            "--worker-class",
            gunicorn_conf.worker_class,
            "--threads",
            str(gunicorn_conf.threads),
        ],
        env,
    )
    mlflow = _mlflow_server(env)
    try:
        project.wait("/api/v1/health/")
        bare.wait("/")
        if mlflow is not None:
            mlflow[0].wait("/ping")
        status, answer = _post(
            project.port,
            "/api/v1/auth/token/",
            json.dumps({"username": client_user.username, "password": PASSWORD}).encode(),
            {},
        )
        if status != 200:
            raise RuntimeError(f"token: {status} {answer[:200]!r}")
        headers = {"Authorization": f"Bearer {json.loads(answer)['access']}"}
        from models_registry.serving.model_cache import MODEL_CACHE
        from models_registry.serving.router import ROUTER

        numeric = MODEL_CACHE.get(ROUTER.route(SLUG).choose()).numeric_features
        bare_bodies = [json.dumps(features(prediction_input(record).row, numeric)).encode() for record in compact]
        predict = f"/api/v1/model-types/{SLUG}/predict/"
        targets = {"project": (project, predict, project_bodies, headers), "bare": (bare, "/", bare_bodies, {})}
        if mlflow is not None:
            targets["mlflow"] = (mlflow[0], "/invocations", mlflow[1], {})
        for server, path, bodies, extra in targets.values():
            drive(server.port, path, bodies, extra, 2, 40)  # warm-up: every worker loads its model
        before = Prediction.objects.count()
        figures: dict[tuple[str, int], dict[str, Any]] = {}
        total = scaled(REQUESTS)
        for level in LEVELS:  # the servers in turns at each level: all see the same machine
            for name, measured in drive_in_turns(targets, level, total).items():
                figures[name, level] = measured
        answered = sum(figures["project", level]["ok"] for level in LEVELS)
        logged = Prediction.objects.count() - before
    finally:
        project.stop()
        bare.stop()
        if mlflow is not None:
            mlflow[0].stop()
    names = [name for name in ("project", "bare", "mlflow") if (name, LEVELS[0]) in figures]

    print(f"\n{'server':<8} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}", file=sys.stderr)
    for level in LEVELS:
        for name in names:
            f = figures[name, level]
            print(
                f"{name:<8} {level:>7} {f['p50']:>8.1f} {f['p99']:>8.1f} {f['throughput']:>8.0f} {f['errors']:>6}",
                file=sys.stderr,
            )
    print(f"answered predictions {answered}, log rows written {logged}\n", file=sys.stderr)

    results = [
        Result(
            "HTTP predict p50 vs bare WSGI app, 1 client (gunicorn, 2 workers)",
            figures["project", 1]["p50"],
            "ms",
            baseline=figures["bare", 1]["p50"],
            max_ratio=1.3,
            note="new connection per request; project: JWT, routing, validation, de-identification, log row",
        ),
        Result(
            "HTTP predict throughput at 8 clients: bare / project",
            figures["bare", 8]["throughput"],
            "req/s",
            baseline=figures["project", 8]["throughput"],
            max_ratio=1 / 0.7,
            note=f"project {figures['project', 8]['throughput']:.0f} req/s (goal >= 0.7x the bare app's)",
        ),
    ]
    for level in LEVELS:
        results.append(
            Result(
                f"HTTP predict p99 at {level} client(s) vs bare",
                figures["project", level]["p99"],
                "ms",
                baseline=figures["bare", level]["p99"],
                note=f"errors: project {figures['project', level]['errors']}, bare {figures['bare', level]['errors']}",
            )
        )
    if "mlflow" in names:
        results += [
            Result(
                "HTTP predict p50 vs MLflow's model server (mlflow models serve, 2 workers), 1 client",
                figures["project", 1]["p50"],
                "ms",
                baseline=figures["mlflow", 1]["p50"],
                max_ratio=1.0,
                note="MLflow: breast-cancer scaler + logistic regression, no auth, no log",
            ),
            Result(
                "HTTP predict throughput at 8 clients: MLflow / project",
                figures["mlflow", 8]["throughput"],
                "req/s",
                baseline=figures["project", 8]["throughput"],
                max_ratio=1.0,
                note=f"project {figures['project', 8]['throughput']:.0f} req/s (goal >= 1.0x MLflow's)",
            ),
        ]
    results.append(
        Result(
            "every answered prediction has its log row (log rows - answers)",
            float(logged - answered),
            "rows",
            ratio=None,
            max_ratio=None,
            note=f"{answered} answered, {logged} logged",
        )
    )
    if logged != answered:
        raise RuntimeError(f"{answered} predictions answered but {logged} log rows written")
    return results
