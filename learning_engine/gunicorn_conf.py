"""gunicorn's configuration for the web processes (``make serve``; ``gunicorn -c`` this file).

Everything a deployment turns is an environment variable, as in settings.py:

- ``HOST``/``PORT`` (127.0.0.1:8000) or ``GUNICORN_BIND`` (e.g. ``0.0.0.0:8000``, ``unix:/run/engine.sock``):
  where to listen. Behind the TLS proxy of docs/deployment.md.
- ``WEB_CONCURRENCY``: worker processes; default ``2 * cores + 1`` (``default_workers``).
- ``GUNICORN_WORKER_CLASS`` (``gthread``) and ``GUNICORN_THREADS`` (4 per worker). Chosen by
  measurement (``python -m benchmarks http`` and the same run with ``sync``, 2 workers each,
  interleaved, on the loaded 2-core machine): one client's predict p50 3.4-4.7 ms with
  ``gthread`` against 12-16 ms with ``sync``, and at 8 clients 153-164 req/s against 81-82. Inside
  the application the CPU per request is the same (2.4-3.1 ms); under ``sync`` the wall time
  inside it was 6-8 ms against 2.5-2.9 ms. The code it runs is thread-safe (the routing table,
  the model cache, monitoring's bins and the verified tokens take locks; Django's database
  connections are per thread). With ``gthread`` the worker's heartbeat goes on while a request
  thread waits, so ``GUNICORN_TIMEOUT`` replaces a worker whose main loop hangs, not one slow
  request.
- ``GUNICORN_TIMEOUT`` (``ARTIFACT_SANDBOX_TIMEOUT_SECONDS`` + 15 s, so 135 s by default): a worker
  silent for longer is killed and replaced. It must exceed the sandbox's wall-clock limit: an
  artifact upload waits that long for its evaluation, and a worker killed first answered nothing
  (502 at the proxy), wrote no audit row and used none of the job's upload attempts, so a valid but
  slow artifact could be sent again and again, each time costing a worker. A lower value stops
  the server at start with a message.

The access log goes to stdout in a format with the path alone (``%(U)s``): never the request line
(``%(r)s``) or the query string (``%(q)s``), where the admin's ``?q=`` and the API's ``?search=``
carry identifiers (docs/deployment.md, "Logs").
"""

from __future__ import annotations

import os

# The path without its query string (%(U)s); %(L)s is the request time in seconds.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(L)s'


def cores() -> int:
    """CPUs this process may run on (a container's or cgroup's cpuset, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(cpu_count: int) -> int:
    """gunicorn's recommendation, 2 x cores + 1 workers.

    A predict request is CPU work (validation, de-identification, the model) and then waits for its
    log row's commit, a database round trip and fsync; a page of the admin waits for several
    queries. A worker whose requests all wait holds its core idle (threads lessen that), so one
    worker per core leaves cores idle; twice as many keeps them busy at the cost of memory (each
    worker keeps its own model cache: a few MB per active version).
    """
    return 2 * max(cpu_count, 1) + 1


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a whole number, got {value!r}.") from exc
    if number < 1:
        raise SystemExit(f"{name} must be at least 1, got {value!r}.")
    return number


wsgi_app = "learning_engine.wsgi:application"
bind = [os.environ.get("GUNICORN_BIND") or f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"]
workers = _int_env("WEB_CONCURRENCY", default_workers(cores()))
_WORKER_CLASSES = ("gthread", "sync")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or "gthread"
if worker_class not in _WORKER_CLASSES:
    raise SystemExit(f"GUNICORN_WORKER_CLASS must be one of {', '.join(_WORKER_CLASSES)}, got {worker_class!r}.")
threads = _int_env("GUNICORN_THREADS", 4)
# ARTIFACT_SANDBOX_TIMEOUT_SECONDS as settings.py reads it (same variable, same default).
SANDBOX_TIMEOUT_DEFAULT = 120
SANDBOX_MARGIN_SECONDS = 15
sandbox_timeout = _int_env("ARTIFACT_SANDBOX_TIMEOUT_SECONDS", SANDBOX_TIMEOUT_DEFAULT)
timeout = _int_env("GUNICORN_TIMEOUT", sandbox_timeout + SANDBOX_MARGIN_SECONDS)
if timeout <= sandbox_timeout:
    raise SystemExit(
        f"GUNICORN_TIMEOUT ({timeout} s) must be longer than ARTIFACT_SANDBOX_TIMEOUT_SECONDS "
        f"({sandbox_timeout} s): an artifact upload waits that long for its evaluation, and a worker "
        "killed before it answers leaves the refused upload unaudited and uncounted."
    )
# A worker is replaced after this many requests (with jitter, so they do not all restart at once):
# bounds the growth of anything a long-lived process accumulates.
max_requests = _int_env("GUNICORN_MAX_REQUESTS", 10_000)
max_requests_jitter = max_requests // 10
accesslog = "-"
access_log_format = ACCESS_LOG_FORMAT
errorlog = "-"
# gunicorn's runtime control socket (in $HOME) is not used; two servers on one machine would share it.
control_socket_disable = True
# X-Forwarded-* are believed only from the proxy in front (gunicorn's own default: 127.0.0.1).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
