"""Settings, read from the environment in this one place.

Every knob a deployment turns is an environment variable (a developer checkout's ``.env`` fills in
what the environment does not set). Secrets have no default anywhere: a missing, short or published
one stops start-up with a message that names the variable (see ``_require_secret``).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from dotenv import load_dotenv

from learning_engine.openapi_tags import TAGS as OPENAPI_TAGS

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}.")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}.") from exc


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}.") from exc
    if not math.isfinite(number):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {value!r}.")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# A developer checkout keeps its settings in a git-ignored .env that `make env` (run by `make run`)
# writes: DEBUG=1 and keys generated for this checkout only. Read before anything else, so the
# README's `manage.py` commands work as written. The environment wins over the file; ENV_FILE names
# another file, and an empty ENV_FILE reads none (the test suite, so a developer's .env never leaks
# into it). python-dotenv: quoting, `export` lines and comments as shells write them.
_ENV_FILE = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if _ENV_FILE:
    if not Path(_ENV_FILE).is_file() and "ENV_FILE" in os.environ:
        raise ImproperlyConfigured(f"ENV_FILE names {_ENV_FILE}, which is not a file.")
    load_dotenv(_ENV_FILE, override=False, interpolate=False)

DEBUG = env_bool("DEBUG", default=False)


def _published_key_digests() -> frozenset[str]:
    """sha256 digests of every key that was ever published (pyproject.toml, one list)."""
    try:
        config = tomllib.loads((BASE_DIR / "pyproject.toml").read_text(encoding="utf-8"))
        return frozenset(config["tool"]["learning-engine"]["published-key-sha256"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        # Fail closed: without the list a leaked key would be accepted silently.
        raise ImproperlyConfigured(
            f"Cannot read the published-key list ([tool.learning-engine] published-key-sha256 in "
            f"{BASE_DIR / 'pyproject.toml'}): {exc}"
        ) from exc


def _require_secret(name: str, *, min_length: int = 32) -> str:
    """A secret from the environment (or .env). There is no default, in development either: a
    default in the source is a published key (anyone could sign a session or a JWT with it)."""
    value = os.environ.get(name, "")
    if not value:
        if DEBUG:
            raise ImproperlyConfigured(
                f"{name} is not set. For a developer checkout run `make env` (or `make run`): it writes "
                f"keys generated for this checkout to .env, which settings read."
            )
        raise ImproperlyConfigured(
            f"{name} is not set. It is required when DEBUG is off; "
            f"set it to a random string of at least {min_length} characters."
        )
    if hashlib.sha256(value.encode()).hexdigest() in _published_key_digests():
        raise ImproperlyConfigured(
            f"{name} is a published key (it appeared in this project's source), so anyone could use it. "
            f"Generate a new one (a developer checkout: remove it from .env and run `make env`)."
        )
    if len(value) < min_length:
        raise ImproperlyConfigured(f"{name} must be at least {min_length} characters long.")
    if len(set(value)) < 10:
        raise ImproperlyConfigured(f"{name} has fewer than 10 distinct characters: use a random string.")
    return value


SECRET_KEY = _require_secret("SECRET_KEY", min_length=50)
# Earlier SECRET_KEYs, comma-separated, while a rotation is under way: Django still accepts what they
# signed, and the alerts app still opens webhook secrets sealed under them (docs/deployment.md).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])
# The key of the patient pseudonym (HMAC-SHA256). It lives only in the environment, never in the
# database, so a database dump alone cannot re-identify a pseudonym by brute force over MRNs.
PSEUDONYM_KEY = _require_secret("PSEUDONYM_KEY")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_tasks_db",
    "learning_engine",
    "alerts",
    "cases",
    "training",
    "models_registry",
    "monitoring",
    "learning",
    "cds_hooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's, Swagger UI's) from STATIC_ROOT, which `make serve` fills with
    # collectstatic; answered here, before the session and the rest, with long-lived cache headers.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Content-Security-Policy (SECURE_CSP below) with a nonce per response for inline code.
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Cache-Control: no-store on every answer but static files (learning_engine/headers.py).
    "learning_engine.headers.NoStoreMiddleware",
    "learning_engine.middleware.RequestBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a login that django-axes refused into the lockout answer (learning_engine.lockout).
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out username and address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "learning_engine.urls"
WSGI_APPLICATION = "learning_engine.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",  # csp_nonce for {% csp_nonce_attr %}
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Persistent connections with DEBUG off: a new PostgreSQL connection per request (TCP,
        # authentication, a backend process) cost more than the whole prediction (issue 16: p50
        # 21.6 ms with new connections, 9.2 ms with DATABASE_CONN_MAX_AGE=600 and Redis). 0 closes
        # each at the end of its request, as development (DEBUG on) keeps doing.
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0 if DEBUG else 600),
        # With persistent connections, check one before reusing it: after a database restart a
        # web process or a long-lived worker reconnects instead of failing its next request. Costs
        # a round trip once per request or task that uses the database, only when the age is > 0.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the worker write while the web process reads; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue on the busy timeout instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# WhiteNoise serves STATIC_ROOT with DEBUG off; with DEBUG on it serves from the apps' own
# directories (its default, WHITENOISE_USE_FINDERS = DEBUG), so `make run` needs no collectstatic.
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
MEDIA_URL = "media/"
STORAGES: dict[str, dict[str, Any]] = {
    # Dataset files and model artifacts go through "default"; point it at shared object storage
    # (django-storages' S3 backend) when workers run on several machines.
    "default": {"BACKEND": os.environ.get("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if os.environ.get("STORAGE_BUCKET"):
    if not STORAGES["default"]["BACKEND"].startswith("storages.backends.s3"):
        raise ImproperlyConfigured(
            "STORAGE_BUCKET needs STORAGE_BACKEND=storages.backends.s3.S3Storage (django-storages)."
        )
    # django-storages (S3-compatible): private objects, never overwritten (a taken name gets a new
    # one, so an artifact is never replaced under its recorded sha256). Credentials, region and
    # endpoint come from boto3's own AWS_* environment variables.
    STORAGES["default"]["OPTIONS"] = {
        "bucket_name": os.environ["STORAGE_BUCKET"],
        "default_acl": None,
        "querystring_auth": True,
        "file_overwrite": False,
    }

# The shared cache carries the serving generation (models_registry.generation): Redis when
# REDIS_URL is set (many machines), else a file cache that the processes of one machine share. The
# generation must be shared: a web process that did not see an activation would keep serving the
# old version, so it is never in a per-process cache. Reading it from the file cache costs one stat
# per request while it is unchanged (learning_engine/file_cache.py); it is written only when an
# activation or an A/B test changes.
# Throttle counters ("throttle") are kept apart: one new entry per client and window would make a
# file cache cull at random, and the serving generation must never be culled.
# Without Redis, the counters of the busy scopes (THROTTLE_LOCAL_SCOPES: predict, feedback) are
# counted in each web process's memory ("throttle_local"): the file cache's add and incr write two
# files and list the directory per request (3.5 ms to 15 ms a request on the 2-core machine,
# against 0.02 ms in memory), so each process then allows the full rate and a machine with N
# workers up to N times it. The scopes that guard against attacks (token, artifact_upload) stay
# in the shared file cache: their limits hold across processes, and they see few requests.
THROTTLE_LOCAL_SCOPES: frozenset[str]
CACHES: dict[str, dict[str, Any]]
if os.environ.get("REDIS_URL"):
    _REDIS = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["REDIS_URL"]}
    CACHES = {"default": _REDIS, "throttle": {**_REDIS, "KEY_PREFIX": "throttle"}}
    THROTTLE_LOCAL_SCOPES = frozenset()
else:
    _CACHE_DIR = Path(os.environ.get("CACHE_DIR", str(BASE_DIR / "var" / "cache")))
    CACHES = {
        # FileBasedCache whose reads of an unchanged entry cost one stat (learning_engine/file_cache.py).
        "default": {"BACKEND": "learning_engine.file_cache.FileCache", "LOCATION": str(_CACHE_DIR)},
        # Counters that change on every request they count: Django's own, read afresh each time.
        "throttle": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(_CACHE_DIR / "throttle"),
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        },
        "throttle_local": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "throttle",
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        },
    }
    THROTTLE_LOCAL_SCOPES = frozenset({"predict", "feedback"})

# Request size limits. The middleware answers 413 (JSON) above these; the import endpoint has its
# own, larger, bound. Django's own limit is set to the largest so it never answers first with 400.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 1024 * 1024)
MAX_IMPORT_BODY_BYTES = env_int("MAX_IMPORT_BODY_BYTES", 20 * 1024 * 1024)
# Serving: records per batch predict request, and that endpoint's own body limit.
MAX_PREDICT_BATCH = env_int("MAX_PREDICT_BATCH", 1000)
MAX_ARTIFACT_UPLOAD_BYTES = env_int("MAX_ARTIFACT_UPLOAD_BYTES", 100 * 1024 * 1024)
# A skops artifact is a zip archive: its directory is checked against these before anything in it
# is inflated (training.artifacts.ZipLimits; docs/artifacts.md).
ARTIFACT_MAX_MEMBERS = env_int("ARTIFACT_MAX_MEMBERS", 100_000)
ARTIFACT_MAX_UNCOMPRESSED_BYTES = env_int("ARTIFACT_MAX_UNCOMPRESSED_BYTES", 1024 * 1024 * 1024)
ARTIFACT_MAX_SCHEMA_BYTES = env_int("ARTIFACT_MAX_SCHEMA_BYTES", 64 * 1024 * 1024)
ARTIFACT_MAX_COMPRESSION_RATIO = env_int("ARTIFACT_MAX_COMPRESSION_RATIO", 200)
# An uploaded artifact is evaluated in a child process with these limits (training.artifact_sandbox).
ARTIFACT_SANDBOX_MEMORY_BYTES = env_int("ARTIFACT_SANDBOX_MEMORY_BYTES", 2 * 1024 * 1024 * 1024)
ARTIFACT_SANDBOX_CPU_SECONDS = env_int("ARTIFACT_SANDBOX_CPU_SECONDS", 60)
ARTIFACT_SANDBOX_TIMEOUT_SECONDS = env_int("ARTIFACT_SANDBOX_TIMEOUT_SECONDS", 120)
# An upload whose median single-row prediction (featurisation included) takes longer is refused
# (artifact_too_slow). The demo models take about 1 ms, a few ms on a loaded 2-core machine.
ARTIFACT_MAX_PREDICT_MS = env_int("ARTIFACT_MAX_PREDICT_MS", 250)
# Refused uploads per external job before it takes no more (409 upload_attempts_exhausted).
ARTIFACT_UPLOAD_MAX_ATTEMPTS = env_int("ARTIFACT_UPLOAD_MAX_ATTEMPTS", 5)
MAX_PREDICT_BODY_BYTES = env_int("MAX_PREDICT_BODY_BYTES", 10 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(MAX_REQUEST_BODY_BYTES, MAX_IMPORT_BODY_BYTES, MAX_PREDICT_BODY_BYTES)
MAX_IMPORT_RECORDS = env_int("MAX_IMPORT_RECORDS", 10_000)
# Nesting of objects and arrays in a JSON body (learning_engine.parsers): deeper is a 400.
MAX_JSON_DEPTH = env_int("MAX_JSON_DEPTH", 32)

# Background work goes through django.tasks. The database queue is the default so that a plain
# `manage.py db_worker` runs jobs on one machine (SQLite) or many (PostgreSQL). Never the
# ImmediateBackend: it would run training inside the web request.
# TASKS_BACKEND: "db" (default), "celery" (learning_engine/celery.py; needs CELERY_BROKER_URL),
# "dummy" (tests), or a backend's dotted path. Workers: `manage.py db_worker --queue-name '*'`, or
# `celery -A learning_engine worker -Q default,training` (docs/deployment.md).
TASKS_BACKENDS = {
    "db": "django_tasks_db.DatabaseBackend",
    "celery": "learning_engine.celery.CeleryBackend",
    "dummy": "django.tasks.backends.dummy.DummyBackend",
}
TASKS_BACKEND = os.environ.get("TASKS_BACKEND") or "db"
TASKS = {
    "default": {
        "BACKEND": TASKS_BACKENDS.get(TASKS_BACKEND, TASKS_BACKEND),
        "QUEUES": ["default", "training"],
    }
}
USES_CELERY = TASKS["default"]["BACKEND"] == TASKS_BACKENDS["celery"]
# Celery (read by learning_engine/celery.py; only used when TASKS_BACKEND is celery). Redis or
# RabbitMQ (amqp://) as broker. Results go to the broker's Redis unless CELERY_RESULT_BACKEND
# says otherwise; nothing depends on them (the job row is the truth), they serve get_result().
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
if USES_CELERY and not CELERY_BROKER_URL:
    if not DEBUG:
        raise ImproperlyConfigured("TASKS_BACKEND is celery: set CELERY_BROKER_URL (e.g. redis://host:6379/0).")
    CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else None
)
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A task is acknowledged when it ends, and one a dead worker held goes back to the queue; a
# worker reserves one message at a time, so a long training run holds no other job back.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Ten priority levels on Redis (kombu's default is four); RabbitMQ queues get x-max-priority.
CELERY_TASK_QUEUE_MAX_PRIORITY = 9
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "priority_steps": list(range(10)),
    # An unacknowledged message (its worker died) is delivered again after this long.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "learning_engine.tokens.SessionJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["learning_engine.permissions.DenyAll"],
    "DEFAULT_PARSER_CLASSES": [
        "learning_engine.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # DRF's negotiation with a shortcut for no Accept header, */* or JSON (learning_engine/negotiation.py).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "learning_engine.negotiation.ContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "learning_engine.pagination.CappedPageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "learning_engine.filters.StrictOrderingFilter",  # an unknown ?ordering= is a 400, not ignored
    ],
    "DEFAULT_SCHEMA_CLASS": "learning_engine.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "learning_engine.exceptions.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["learning_engine.throttling.ScopedCacheThrottle"],
    # Proxies of ours in front of the web processes: X-Forwarded-For is believed only this deep.
    # 0 ignores the header, so a client cannot pick its throttling identity; behind our TLS proxy
    # the default is 1, else every client would share the proxy's address (and one client's
    # throttle would lock everybody out of logging in).
    "NUM_PROXIES": env_int("NUM_PROXIES", 1 if env_bool("BEHIND_TLS_PROXY", default=False) else 0),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
MAX_PAGE_SIZE = env_int("MAX_PAGE_SIZE", 500)


# Requests per client and window (learning_engine.throttling); an empty value turns one off.
def env_rate(name: str, default: str) -> str:
    """A throttle rate such as '30/min' (per s, min, hour or day); empty turns the throttle off."""
    value = os.environ.get(name, default).strip()
    if value and not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(f"{name} must look like 30/min (per s, min, hour or day), got {value!r}.")
    return value


THROTTLE_RATES = {
    "token": env_rate("THROTTLE_TOKEN_RATE", "30/min"),
    "predict": env_rate("THROTTLE_PREDICT_RATE", "6000/min"),
    # Feedback is once per prediction; a client sending far more than it predicts is up to something.
    "feedback": env_rate("THROTTLE_FEEDBACK_RATE", "600/min"),
    "artifact_upload": env_rate("THROTTLE_ARTIFACT_UPLOAD_RATE", "20/hour"),
}

# Login lockout (django-axes; learning_engine/lockout.py says why the username and address count
# together). Attempts live in the database, visible and removable in the admin.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "learning_engine.lockout.client_address"
AXES_LOCKOUT_CALLABLE = "learning_engine.lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 5)),
    "REFRESH_TOKEN_LIFETIME": timedelta(hours=env_int("JWT_REFRESH_HOURS", 24)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "SIGNING_KEY": SECRET_KEY,
    "ALGORITHM": "HS256",
    "CHECK_USER_IS_ACTIVE": True,
    # Tokens bound to one login and to the user's credentials (learning_engine/tokens.py).
    "TOKEN_OBTAIN_SERIALIZER": "learning_engine.tokens.TokenObtainSerializer",
    "TOKEN_REFRESH_SERIALIZER": "learning_engine.tokens.TokenRotateSerializer",
}
# A login lasts this long whatever the rotations: no token expires later than its auth_time plus
# this, and then the user gives the password again.
JWT_SESSION_LIFETIME = timedelta(hours=env_int("JWT_SESSION_HOURS", 12))

SPECTACULAR_SETTINGS = {
    "TITLE": "Self-learning clinical diagnosis engine",
    # Markdown (Swagger UI renders it): anything in angle brackets goes in a code span, or it is
    # taken as an HTML tag and disappears.
    "DESCRIPTION": (
        "Clinical cases, de-identified datasets, training jobs, the model registry, serving and A/B tests.\n\n"
        "**Authentication.** Every operation but `health` and the `auth` ones takes a JWT access token "
        "(the scheme `jwtAuth`, the only one a client needs): `POST /api/v1/auth/token/` with "
        '`{"username": "...", "password": "..."}` answers `{"access": "...", "refresh": "..."}`; send '
        "`Authorization: Bearer <access>` with every request. In this page: *Authorize*, paste the access "
        "token (without `Bearer`). An access token lasts 5 minutes: `POST /api/v1/auth/token/refresh/` with "
        '`{"refresh": "..."}` gives a new pair (the old refresh token stops working); '
        "`POST /api/v1/auth/token/blacklist/` logs out.\n\n"
        "**Bodies** are JSON (`Content-Type: application/json`), except a case import (JSON Lines too) and a "
        "version upload (multipart). **Errors** are JSON with a machine-readable `code` "
        "(`invalid`, `not_authenticated`, `permission_denied`, `not_found`, `invalid_transition`, ...)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Operation ids and tags (learning_engine.openapi): what a generated client and Swagger UI show.
    "TAGS": OPENAPI_TAGS,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "learning_engine.openapi.drop_unused_tags",
    ],
    # One documented scheme, the bearer JWT (jwtAuth). The session cookie still works (the browsable
    # API, Swagger UI in a logged-in browser) but is no way for a client program, so it is not offered.
    "AUTHENTICATION_WHITELIST": [
        "learning_engine.tokens.SessionJWTAuthentication",
        "models_registry.serving.views.ServingJWTAuthentication",
        "learning_engine.stateless_auth.StatelessJWTAuthentication",
        # CDS Hooks (its own scheme, cdsHooksJwt: cds_hooks/openapi.py): the record system's signed JWT.
        "cds_hooks.auth.CdsHooksAuthentication",
    ],
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "persistAuthorization": True, "displayOperationId": True},
    # Every model has a "status"; name each enum after its model so they do not collide.
    "ENUM_NAME_OVERRIDES": {
        "CaseStatusEnum": "cases.models.Case.Status",
        "RejectionReasonEnum": "cases.models.Case.RejectionReason",
        "DatasetSnapshotStatusEnum": "training.models.DatasetSnapshot.Status",
        "ABTestStatusEnum": "models_registry.models.ABTest.Status",
        "ABTestDecisionEnum": "models_registry.experiments.serializers.DECISIONS",
        "TrainingJobStatusEnum": "training.models.TrainingJob.Status",
        "TrainingJobExecutorEnum": "training.models.TrainingJob.Executor",
        "ModelTypeAlgorithmEnum": "training.models.ModelType.Algorithm",
        "ModelVersionApprovalEnum": "models_registry.models.ModelVersion.Approval",
        "ModelVersionDeploymentEnum": "models_registry.models.ModelVersion.Deployment",
        "PerformanceRecordSourceEnum": "models_registry.models.PerformanceRecord.Source",
        "ComparisonVerdictEnum": "models_registry.registry.compare.VERDICTS",
        "OutOfRangeBasisEnum": "models_registry.serving.inputs.RANGE_BASES",
        "LearningCycleStatusEnum": "learning.models.LearningCycle.Status",
        "LearningCycleKindEnum": "learning.models.LearningCycle.Kind",
        "LearningCycleTriggerEnum": "learning.models.LearningCycle.Trigger",
        "LearningPolicyTestModeEnum": "learning.models.LearningPolicy.TestMode",
        "LearningPolicyRollbackActionEnum": "learning.models.LearningPolicy.RollbackAction",
    },
}

# Content-Security-Policy on every page (the admin, the browsable API, Swagger UI): scripts, styles
# and everything else from this origin only; inline <script> and <style> only with the response's
# nonce ({% csp_nonce_attr %}); no inline style attributes (charts use SVG presentation attributes),
# no plugins, no framing, forms post back here only. img-src allows data: URIs (Swagger UI's icons).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# An admin session lasts a working day from the login (SESSION_HOURS), not Django's two weeks.
SESSION_COOKIE_AGE = env_int("SESSION_HOURS", 10) * 3600

# Production hardening, on whenever DEBUG is off (`manage.py check --deploy` stays clean).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env_bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
# No query string reaches a log line (learning_engine/log_filters.py): identifiers travel in them
# (the admin's ?q=, the API's ?search=). Every handler filters, runserver's request log included.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "no_query_strings": {"()": "learning_engine.log_filters.StripQueryStrings"},
        "one_line_client_errors": {"()": "learning_engine.log_filters.OneLineClientErrors"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["no_query_strings", "one_line_client_errors"],
        },
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": ["no_query_strings"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        # runserver's request lines ("GET /admin/cases/case/?q=... HTTP/1.1" 200).
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
        # Django's own warnings and errors ("Not Found: /path", tracebacks), with DEBUG off too.
        "django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # "Watching for file changes with StatReloader", once (db_worker reloads on code changes
        # with DEBUG on). It used to print twice: through Django's default handler and the root's.
        "django.utils.autoreload": {"level": "INFO"},
        # urllib3 logs each request's URL at DEBUG: a webhook URL's path may be a token (alerts/webhooks.py).
        "urllib3": {"level": "WARNING"},
        # db_worker prints nothing unless the django.tasks logger is configured.
        "django.tasks": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django_tasks_db": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "learning_engine": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "cases": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "training": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "models_registry": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}

# Native threads (BLAS, OpenMP) a training run may use. One by default: on a small machine the
# web process and other workers share the cores, and oversubscription made boosting 16x slower.
TRAINING_THREADS = env_int("TRAINING_THREADS", 1)

# A running job whose heartbeat is older than this is reaped (requeued or failed); the reaper
# looks every REAPER_INTERVAL_SECONDS. Workers heartbeat every few seconds while they train.
JOB_STALE_SECONDS = env_int("JOB_STALE_SECONDS", 120)
REAPER_INTERVAL_SECONDS = env_int("REAPER_INTERVAL_SECONDS", 30)
# How long a worker whose database went away waits for it to record a job's failure (a restart or
# failover takes seconds); after that the job is left to the reaper.
DATABASE_OUTAGE_WAIT_SECONDS = env_int("DATABASE_OUTAGE_WAIT_SECONDS", 60)
# A dataset build that never started (its task lost) is failed after this long.
DATASET_QUEUED_LIMIT_SECONDS = env_int("DATASET_QUEUED_LIMIT_SECONDS", 24 * 3600)
# How often the periodic task concludes A/B tests that are past their duration (without promotion).
AB_TEST_CHECK_INTERVAL_SECONDS = env_int("AB_TEST_CHECK_INTERVAL_SECONDS", 300)
# How often the learning loop advances open cycles and checks its triggers (learning.tasks).
LEARNING_CYCLE_INTERVAL_SECONDS = env_int("LEARNING_CYCLE_INTERVAL_SECONDS", 300)

# Monitoring of the serving versions (monitoring/, docs/design.md "Monitoring"): a snapshot of each
# active version and A/B arm every MONITORING_INTERVAL_SECONDS; drift and volume over the last
# MONITORING_WINDOW_HOURS; degraded when the live accuracy's anytime-valid interval (level
# 1 - MONITORING_ALPHA) lies below the offline accuracy minus MONITORING_TOLERANCE, read over the
# recent labelled units: a fresh sequence every MONITORING_DEGRADATION_WINDOW units, alpha spent
# across the restarts (monitoring.stats.recent_accuracy; 0 reads everything since activation); an
# input drifted at PSI >= MONITORING_PSI_THRESHOLD over at least MONITORING_MIN_INPUTS inputs.
MONITORING_INTERVAL_SECONDS = env_int("MONITORING_INTERVAL_SECONDS", 3600)
MONITORING_WINDOW_HOURS = env_int("MONITORING_WINDOW_HOURS", 24)
MONITORING_TOLERANCE = env_float("MONITORING_TOLERANCE", 0.05)
MONITORING_ALPHA = env_float("MONITORING_ALPHA", 0.05)
MONITORING_PSI_THRESHOLD = env_float("MONITORING_PSI_THRESHOLD", 0.2)
MONITORING_MIN_INPUTS = env_int("MONITORING_MIN_INPUTS", 100)
MONITORING_TALLY_RETENTION_DAYS = env_int("MONITORING_TALLY_RETENTION_DAYS", 30)
MONITORING_DEGRADATION_WINDOW = env_int("MONITORING_DEGRADATION_WINDOW", 200)
if not 0 <= MONITORING_DEGRADATION_WINDOW <= 10_000_000:
    raise ImproperlyConfigured(
        "MONITORING_DEGRADATION_WINDOW is a number of labelled units from 0 to 10,000,000 (0: since activation)."
    )
for _name, _value, _low, _high in (
    ("MONITORING_TOLERANCE", MONITORING_TOLERANCE, 0.0, 1.0),
    ("MONITORING_ALPHA", MONITORING_ALPHA, 1e-6, 0.5),
    ("MONITORING_PSI_THRESHOLD", MONITORING_PSI_THRESHOLD, 1e-6, 100.0),
):
    if not _low <= _value <= _high:
        raise ImproperlyConfigured(f"{_name} must lie in [{_low}, {_high}], got {_value}.")
if MONITORING_INTERVAL_SECONDS < 1 or MONITORING_WINDOW_HOURS < 1 or MONITORING_MIN_INPUTS < 1:
    raise ImproperlyConfigured(
        "MONITORING_INTERVAL_SECONDS, MONITORING_WINDOW_HOURS and MONITORING_MIN_INPUTS are positive."
    )
# Alerts (alerts/, docs/design.md "Alerts"). Webhooks go only to public addresses, checked after DNS
# resolution, unless ALERTS_WEBHOOK_ALLOW_PRIVATE (a receiver inside the hospital network, on purpose);
# only to https unless ALERTS_WEBHOOK_ALLOW_HTTP. A failed delivery is retried with exponential backoff
# and jitter (base x 2^(n-1), at most the maximum) and given up after ALERTS_MAX_ATTEMPTS.
ALERTS_WEBHOOK_ALLOW_PRIVATE = env_bool("ALERTS_WEBHOOK_ALLOW_PRIVATE", False)
ALERTS_WEBHOOK_ALLOW_HTTP = env_bool("ALERTS_WEBHOOK_ALLOW_HTTP", False)
ALERTS_WEBHOOK_CONNECT_TIMEOUT_SECONDS = env_int("ALERTS_WEBHOOK_CONNECT_TIMEOUT_SECONDS", 5)
ALERTS_WEBHOOK_TIMEOUT_SECONDS = env_int("ALERTS_WEBHOOK_TIMEOUT_SECONDS", 20)
# A PEM file of the certificate authorities webhook receivers' certificates must chain to (a hospital's
# own CA); empty: the system's store.
ALERTS_WEBHOOK_CA_BUNDLE = os.environ.get("ALERTS_WEBHOOK_CA_BUNDLE", "")
ALERTS_MAX_ATTEMPTS = env_int("ALERTS_MAX_ATTEMPTS", 8)
ALERTS_RETRY_BASE_SECONDS = env_int("ALERTS_RETRY_BASE_SECONDS", 30)
ALERTS_RETRY_MAX_SECONDS = env_int("ALERTS_RETRY_MAX_SECONDS", 6 * 3600)
# The periodic sweep sends deliveries that are due and whose queued attempt was lost.
ALERTS_SWEEP_INTERVAL_SECONDS = env_int("ALERTS_SWEEP_INTERVAL_SECONDS", 300)
ALERTS_EMAIL_FROM = os.environ.get("ALERTS_EMAIL_FROM", "alerts@learning-engine.invalid")
# E-mail (the alerts' e-mail receivers) through Django's mailers: SMTP at EMAIL_HOST, or the console with
# DEBUG on unless EMAIL_BACKEND says otherwise; the test runner swaps in the locmem backend. The timeout
# keeps a silent mail server from holding a worker.
MAILERS = {
    "default": {
        "BACKEND": os.environ.get(
            "EMAIL_BACKEND",
            "django.core.mail.backends.console.EmailBackend"
            if DEBUG
            else "django.core.mail.backends.smtp.EmailBackend",
        ),
        "OPTIONS": {
            "host": os.environ.get("EMAIL_HOST", "localhost"),
            "port": env_int("EMAIL_PORT", 25),
            "username": os.environ.get("EMAIL_HOST_USER", ""),
            "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_bool("EMAIL_USE_TLS", False),
            "timeout": env_int("EMAIL_TIMEOUT_SECONDS", 10),
        },
    }
}
if "console" in MAILERS["default"]["BACKEND"] or "locmem" in MAILERS["default"]["BACKEND"]:
    MAILERS["default"]["OPTIONS"] = {}

ENGINE_VERSION = "0.1.0"

# CDS Hooks (cds_hooks/): the record systems' signed JWTs and their keys (README, "CDS Hooks").
CDS_HOOKS_MAX_TOKEN_SECONDS = env_int("CDS_HOOKS_MAX_TOKEN_SECONDS", 300)
CDS_HOOKS_CLOCK_SKEW_SECONDS = env_int("CDS_HOOKS_CLOCK_SKEW_SECONDS", 30)
CDS_HOOKS_MAX_TOKEN_BYTES = env_int("CDS_HOOKS_MAX_TOKEN_BYTES", 8192)
CDS_HOOKS_JWKS_CACHE_SECONDS = env_int("CDS_HOOKS_JWKS_CACHE_SECONDS", 300)
CDS_HOOKS_JWKS_MAX_STALE_SECONDS = env_int("CDS_HOOKS_JWKS_MAX_STALE_SECONDS", 3600)
CDS_HOOKS_JWKS_PRIVATE_NETWORKS = env_bool("CDS_HOOKS_JWKS_PRIVATE_NETWORKS", default=False)
