"""Shared fixtures: one user per role, and API clients authenticated as them."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from learning_engine import roles
from learning_engine.tokens import RefreshToken
from tests.factories import user_with_role

if TYPE_CHECKING:
    from models_registry.models import ModelVersion
    from training.models import ModelType

ROLE_NAMES = ("anonymous", *roles.ROLES)
POSTGRES_ONLY = "real concurrency needs PostgreSQL (DATABASE_URL=postgres://...); SQLite serialises writers"


@pytest.hookimpl(trylast=True)  # after folder conftests have added their markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres`` are skipped, with the reason, unless the suite runs on PostgreSQL."""
    from django.conf import settings

    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        return
    for item in items:
        if item.get_closest_marker("postgres") is not None:
            item.add_marker(pytest.mark.skip(reason=POSTGRES_ONLY))


@pytest.fixture
def make_user(db) -> Callable[..., User]:
    """make_user("clinician", username="alice"): a user in that role (None: no role)."""

    def make(role: str | None = None, **kwargs: object) -> User:
        return user_with_role(role, **kwargs)

    return make


@pytest.fixture
def staff(make_user, client) -> Callable[..., tuple[Client, User]]:
    """staff("clinical_lead"): Django's test client logged in as a fresh staff user of that role (None:
    no role; ``is_superuser=True`` and other user fields as keywords), and the user."""

    def login(role: str | None, **fields: object) -> tuple[Client, User]:
        user = make_user(role, is_staff=True, **fields)
        client.force_login(user)
        return client, user

    return login


@pytest.fixture
def clinician(make_user):
    return make_user(roles.CLINICIAN)


@pytest.fixture
def second_clinician(make_user):
    return make_user(roles.CLINICIAN)


# One fixture per role: `engineer` (ml_engineer) and `lead` (clinical_lead). A test that needs a
# second person of a role makes one with make_user (as tests/models_registry/registry/test_admin.py's
# other_lead does).
@pytest.fixture
def engineer(make_user):
    return make_user(roles.ML_ENGINEER)


@pytest.fixture
def lead(make_user):
    return make_user(roles.CLINICAL_LEAD)


@pytest.fixture
def prediction_client(make_user):
    return make_user(roles.PREDICTION_CLIENT)


@pytest.fixture
def model_type(db) -> ModelType:
    """The demo's "diagnosis" model type of the respiratory cohort (``ModelTypeFactory.create(diagnosis=True)``)."""
    from tests.training.factories import ModelTypeFactory

    return ModelTypeFactory.create(diagnosis=True)


@pytest.fixture
def version(db) -> ModelVersion:
    """A version trained on synthetic rows, registered, approved and active (``served_version()``);
    monitoring's conftest and the registry's artifact tests have versions of their own kind."""
    from tests.models_registry.serving.factories import served_version

    return served_version()


def jwt_client(user: User | None) -> APIClient:
    """An API client that sends a real JWT access token for ``user`` (anonymous for None)."""
    client = APIClient()
    if user is not None:
        token = RefreshToken.for_user(user).access_token
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def api_client_for(make_user) -> Callable[[str], APIClient]:
    """api_client_for("ml_engineer"): a JWT client for a fresh user of that role ("anonymous" too)."""

    def make(role: str) -> APIClient:
        if role == "anonymous":
            return jwt_client(None)
        return jwt_client(make_user(role))

    return make


@pytest.fixture
def fresh_serving() -> Iterator[None]:
    """Each test starts and ends with a cold serving state: the in-process table and models of a
    previous test (whose database rows were rolled back) must not answer for this one."""
    from tests.models_registry.serving.factories import reset_serving_state

    reset_serving_state()
    yield
    reset_serving_state()


@pytest.fixture
def cold_labels() -> Iterator[None]:
    """The data dictionaries' label cache is empty when the test starts and when it ends
    (``pytestmark = pytest.mark.usefixtures("cold_labels")``)."""
    from cases.dictionary import labels

    labels.clear_cache()
    yield
    labels.clear_cache()


@pytest.fixture
def empty_task_queue() -> Iterator[None]:
    """Nothing in the test settings' task backend (django.tasks' DummyBackend, which keeps what is
    enqueued) when the test starts and when it ends (``pytest.mark.usefixtures("empty_task_queue")``)."""
    from tests.training.factories import task_queue

    task_queue().clear()
    yield
    task_queue().clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # PBKDF2's deliberate slowness buys nothing in tests and costs seconds per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _media_and_cache_in_a_temporary_folder(settings, tmp_path) -> None:
    # Dataset files, model artifacts and cache entries written by tests never land in the checkout
    # and never leak from one test into the next.
    settings.MEDIA_ROOT = tmp_path / "media"
    caches = {
        alias: {"BACKEND": backend, "LOCATION": str(tmp_path / "cache" / alias)}
        for alias, backend in (
            ("default", "learning_engine.file_cache.FileCache"),  # as settings.py without Redis
            ("throttle", "django.core.cache.backends.filebased.FileBasedCache"),
        )
    }
    # Per-process counters (settings.THROTTLE_LOCAL_SCOPES); LOCATION per test, so none leaks.
    caches["throttle_local"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": str(tmp_path)}
    settings.CACHES = caches


# --- Data dictionaries ------------------------------------------------------------------------------
# Case records are checked against their cohort's data dictionary (issue 11). The test database holds
# the shipped dictionaries of the demo cohorts (`breast-mass`, `respiratory`), as a site holds its
# own after `manage.py load_dictionary`: loaded once per session, and again after a transactional
# test has flushed the tables.


def _ensure_demo_dictionaries() -> None:
    from cases.dictionary.files import DEMO_FILES, load_demo_dictionaries
    from cases.models import DataDictionary

    slugs = [name.removesuffix(".json") for name in DEMO_FILES]
    if DataDictionary.objects.filter(cohort__slug__in=slugs, status="published").count() < len(slugs):
        load_demo_dictionaries()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):  # extends pytest-django's
    with django_db_blocker.unblock():
        _ensure_demo_dictionaries()


@pytest.fixture(autouse=True)
def _demo_dictionaries(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    )
    if not transactional:
        return  # the session's dictionaries are there; a test's own transaction rolls back
    request.getfixturevalue("transactional_db")
    # A transactional test before this one flushed the tables: the role groups (made by a data
    # migration) and the demo dictionaries are put back, so the order tests run in does not matter.
    from django.contrib.auth.models import Group

    from learning_engine import roles

    if Group.objects.filter(name__in=roles.ROLES).count() != len(roles.ROLES):
        roles.sync_roles()
    _ensure_demo_dictionaries()


@pytest.fixture
def media_root(tmp_path):
    """Temporary files go to ``tmp_path / "tmp"`` (dataset files already go to ``tmp_path / "media"``
    for every test): a test can count both. Modules that build datasets use it."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    original = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    yield tmp_path
    tempfile.tempdir = original


@pytest.fixture
def gc_defaults() -> Iterator[tuple[int, int, int]]:
    """CPython's default collector thresholds and nothing frozen for the test, whatever an earlier
    test left; then the thresholds as they were and nothing frozen."""
    import gc

    kept = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    try:
        yield (700, 10, 10)
    finally:
        gc.set_threshold(*kept)
        gc.unfreeze()
