"""Form fields shared by the admin's forms.

``StrictJSONField``: Django's ``forms.JSONField`` reads its text with plain ``json.loads``, which
takes ``NaN``, ``1e999`` (infinity), integers of any length and any depth of nesting. A textarea
holding ``[[[[...`` a hundred thousand deep raised ``RecursionError`` (a 500) and an integer of
400 digits reached code that converts it to a float (``OverflowError``, a 500). This field reads
JSON as the API's parser does (``learning_engine.parsers``): at most ``MAX_JSON_DEPTH`` levels,
every number finite and within range; anything else is a form error beside the field.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput, JSONString

from learning_engine.parsers import InvalidNumber, loads, raw_json_depth


def parse_strict_json(text: str) -> Any:
    """The value of a JSON text, or ``ValidationError`` (too deep, a hostile number, not JSON)."""
    limit = int(settings.MAX_JSON_DEPTH)
    if raw_json_depth(text.encode("utf-8", "surrogatepass")) > limit:
        raise ValidationError(f"Nests objects and arrays more than {limit} levels deep.", code="too_deep")
    try:
        return loads(text)
    except InvalidNumber as exc:
        raise ValidationError(str(exc), code="invalid_number") from None
    except (ValueError, RecursionError):
        raise ValidationError("Enter a valid JSON.", code="invalid") from None


class StrictJSONField(forms.JSONField):
    def to_python(self, value: Any) -> Any:
        if self.disabled:
            return value
        if value in self.empty_values:
            return None
        if isinstance(value, (list, dict, int, float, JSONString)):
            return value
        converted = parse_strict_json(str(value))
        return JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        # Redisplaying the user's text after an error must not parse it the lenient way either.
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            return parse_strict_json(str(data))
        except ValidationError:
            return InvalidJSONInput(data)
