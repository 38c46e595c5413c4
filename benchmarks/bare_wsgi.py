"""The bare baseline of ``bench_http``: a WSGI app that answers ``predict_proba`` of one skops model.

No authentication, no routing, no validation, no de-identification, no log: the body is the
model's feature dict (JSON), the answer the class probabilities. Served by the same gunicorn as the
project (``gunicorn benchmarks.bare_wsgi``), so the difference is the project's per-request work.
The model is the artifact ``BENCH_ARTIFACT`` names (with ``BENCH_ARTIFACT_SHA256``), loaded with
the project's checked loader once per worker.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learning_engine.settings")
django.setup()

from training.artifacts import load_artifact  # noqa: E402  (needs the settings: the storage)

_MODEL = load_artifact(os.environ["BENCH_ARTIFACT"], os.environ["BENCH_ARTIFACT_SHA256"])


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    size = int(environ.get("CONTENT_LENGTH") or 0)
    features = json.loads(environ["wsgi.input"].read(size))
    probabilities = _MODEL.pipeline.predict_proba([features])[0]
    body = json.dumps(dict(zip(_MODEL.classes, (float(p) for p in probabilities), strict=True))).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
