"""Serializers of the cohort API (read-only)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cases.dictionary.definition import DEFINITION_SCHEMA
from cases.dictionary.models import Cohort, DataDictionary


# The definition's own schema is JSON Schema 2020-12 (nullable bounds as type lists), which
# OpenAPI 3.0 cannot embed: the answer documents the top level and points to the full schema.
@extend_schema_field(
    {
        "type": "object",
        "description": "The dictionary definition: findings, symptoms, diagnoses, demographics "
        "(docs/data-dictionary.md; its JSON Schema is cases.dictionary.definition.DEFINITION_SCHEMA).",
        "properties": {
            name: {"type": "array", "items": {"type": "object"}} for name in ("findings", "symptoms", "diagnoses")
        }
        | {"demographics": {"type": "object", "properties": {"age": {"type": "boolean"}, "sex": {"type": "boolean"}}}},
        "required": list(DEFINITION_SCHEMA["required"]),
    }
)
class DefinitionField(serializers.JSONField):
    pass


class DataDictionarySerializer(serializers.ModelSerializer):
    definition = DefinitionField(read_only=True)
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    published_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    based_on = serializers.SerializerMethodField()

    class Meta:
        model = DataDictionary
        fields = [
            "version",
            "status",
            "definition_sha256",
            "based_on",
            "created_by",
            "created_at",
            "published_by",
            "published_at",
            "definition",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.INT)
    def get_based_on(self, obj: DataDictionary) -> int | None:
        # The version number, read without a query (the versions of one cohort are all prefetched).
        based_on_id = obj.based_on_id
        if based_on_id is None:
            return None
        siblings = {d.pk: d.version for d in obj.cohort.dictionaries.all()}
        return siblings.get(based_on_id)


class DictionaryVersionRefSerializer(serializers.Serializer):
    """What a dataset snapshot or a model version records of its dictionary version (read the
    ``dictionary__cohort`` with it: ``select_related``)."""

    cohort = serializers.CharField(source="cohort.slug", help_text="The cohort's slug.")
    version = serializers.IntegerField(help_text="The dictionary version number within the cohort.")


def _current(cohort: Cohort) -> DataDictionary | None:
    published = [d for d in cohort.dictionaries.all() if d.status == DataDictionary.Status.PUBLISHED]
    return max(published, key=lambda d: d.version) if published else None


class CohortSerializer(serializers.ModelSerializer):
    current_version = serializers.SerializerMethodField(help_text="The newest published version: new records use it.")

    class Meta:
        model = Cohort
        fields = ["slug", "name", "description", "current_version"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.INT)
    def get_current_version(self, cohort: Cohort) -> int | None:
        current = _current(cohort)
        return current.version if current else None


class CohortDetailSerializer(CohortSerializer):
    dictionaries = serializers.SerializerMethodField(help_text="Every version, newest first.")

    class Meta(CohortSerializer.Meta):
        fields = [*CohortSerializer.Meta.fields, "dictionaries"]
        read_only_fields = fields

    @extend_schema_field(DataDictionarySerializer(many=True))
    def get_dictionaries(self, cohort: Cohort) -> list[dict[str, Any]]:
        versions = sorted(cohort.dictionaries.all(), key=lambda d: -d.version)
        return DataDictionarySerializer(versions, many=True, context=self.context).data  # type: ignore[return-value]


class SchemaParamsSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="A dictionary version; by default the current one."
    )
