"""What the A/B tests add to the layers below them, connected in ``ModelsRegistryConfig.ready()``.

The registry and serving do not import the experiments (the layering is one-way, checked by
import-linter); each declares a callback or signal, and ``connect`` fills them in:

- the registry's deployment guard (``register_deployment_guard``): no deactivation or archive of a
  running test's arm, no other activation of its model type while it runs (409);
- the comparison's A/B test (``register_ab_test_lookup``): the two versions' running (else latest)
  test with its live figures, and the comparison serializer's field that documents it;
- serving's running tests (``register_running_tests``): their arms replace the active version;
- ``ab_test_started``: the chain of expiry checks starts with a test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db.models import Case, IntegerField, Q, Value, When

from models_registry.experiments.models import ABTest, ab_test_started, refuse_deployment_change_during_a_test
from models_registry.experiments.serializers import ABTestSerializer, ComparedABTestSerializer
from models_registry.experiments.tasks import ensure_ab_test_checks_scheduled
from models_registry.registry.compare import register_ab_test_lookup
from models_registry.registry.models import ModelVersion, register_deployment_guard
from models_registry.registry.serializers import declare_ab_test_field
from models_registry.serving.router import register_running_tests


def running_tests(version_fields: Sequence[str]) -> Iterable[Mapping[str, Any]]:
    """The running tests with both arms' version fields (``router._load_arms``'s rows; one query)."""
    return ABTest.objects.running().values(
        "id",
        "model_type_id",
        "mode",
        "traffic_split",
        *(f"version_{arm}__{name}" for arm in "ab" for name in version_fields if name != "model_type_id"),
    )


def ab_test_of(a: ModelVersion, b: ModelVersion) -> dict[str, Any] | None:
    """The running (else the latest) A/B test between ``a`` and ``b``, with its live figures."""
    test = (
        ABTest.objects.filter(Q(version_a=a, version_b=b) | Q(version_a=b, version_b=a))
        .select_related("model_type", "version_a", "version_b", "created_by", "concluded_by")
        .annotate(
            running_first=Case(
                When(status=ABTest.Status.RUNNING, then=Value(0)), default=Value(1), output_field=IntegerField()
            )
        )
        .order_by("running_first", "-started_at", "-id")
        .first()
    )
    if test is None:
        return None
    return {**ABTestSerializer(test).data, "figures": test.evaluate()}


def _schedule_expiry_checks(sender: object, **kwargs: object) -> None:
    ensure_ab_test_checks_scheduled()


def connect() -> None:
    register_deployment_guard(refuse_deployment_change_during_a_test)
    register_ab_test_lookup(ab_test_of)
    declare_ab_test_field(
        ComparedABTestSerializer(
            allow_null=True, help_text="The running (else the latest) A/B test of the two versions, with live figures."
        )
    )
    register_running_tests(running_tests)
    ab_test_started.connect(_schedule_expiry_checks, dispatch_uid="ab_test_expiry_checks")
