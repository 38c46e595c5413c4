"""Read-only representations of learning cycles and policies for the API."""

from __future__ import annotations

from rest_framework import serializers

from learning.models import CycleTransition, LearningCycle, LearningPolicy


class PolicySummarySerializer(serializers.ModelSerializer[LearningPolicy]):
    class Meta:
        model = LearningPolicy
        fields = [
            "version",
            "enabled",
            "test_mode",
            "auto_promote",
            "rollback_action",
            "retry_after_hours",
            "locked_renew_days",
            "locked_renew_on_drift",
            "locked_min_fresh_share",
            "locked_release_retired",
        ]


class CycleStepSerializer(serializers.ModelSerializer[CycleTransition]):
    actor = serializers.SerializerMethodField()

    class Meta:
        model = CycleTransition
        fields = ["from_state", "to_state", "reason", "actor", "created_at"]

    def get_actor(self, obj: CycleTransition) -> str | None:
        return obj.actor.get_username() if obj.actor is not None else None


class LearningCycleSerializer(serializers.ModelSerializer[LearningCycle]):
    model_type = serializers.CharField(source="model_type.slug")
    policy = PolicySummarySerializer()
    champion = serializers.SerializerMethodField()
    candidate = serializers.SerializerMethodField()

    class Meta:
        model = LearningCycle
        fields = [
            "id",
            "model_type",
            "policy",
            "kind",
            "trigger",
            "status",
            "champion",
            "candidate",
            "envelope_passed",
            "test_decision",
            "outcome",
            "created_at",
            "finished_at",
        ]

    def get_champion(self, obj: LearningCycle) -> str | None:
        return obj.champion.version if obj.champion is not None else None

    def get_candidate(self, obj: LearningCycle) -> str | None:
        return obj.candidate.version if obj.candidate is not None else None


class LearningCycleDetailSerializer(LearningCycleSerializer):
    steps = CycleStepSerializer(source="transitions", many=True)
    envelope = serializers.JSONField()
    trigger_detail = serializers.JSONField()
    candidates = serializers.JSONField()
    locked_renewal = serializers.JSONField()

    class Meta(LearningCycleSerializer.Meta):
        fields = [
            *LearningCycleSerializer.Meta.fields,
            "trigger_detail",
            "locked_set",
            "locked_renewal",
            "dataset",
            "jobs",
            "candidates",
            "envelope",
            "ab_test",
            "steps",
        ]
