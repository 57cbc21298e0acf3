"""DRF fields that take only their own JSON type.

DRF coerces by default ("enabled": 0 is false, "retries": "3" is 3, "block_id": 7 is "7"). The API's
schema (/api/schema/) promises a type and schemathesis holds the server to it both ways, so the
request serializers use these: a value of another JSON type is a 400, as the schema says.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class _Strict:
    json_types: tuple[type, ...] = ()

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) != (bool in self.json_types) or not isinstance(data, self.json_types):
            self.fail("wrong_type")
        return super().to_internal_value(data)


class _Untrimmed:
    # A pattern or length is about the value as sent: trimming first would let " " pass minLength 1.
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(*args, **kwargs)


class StrictCharField(_Strict, _Untrimmed, serializers.CharField):
    json_types = (str,)
    default_error_messages = {"wrong_type": "Must be a string."}


class StrictRegexField(_Strict, _Untrimmed, serializers.RegexField):
    json_types = (str,)
    default_error_messages = {"wrong_type": "Must be a string."}


class StrictSlugField(_Strict, _Untrimmed, serializers.SlugField):
    json_types = (str,)
    default_error_messages = {"wrong_type": "Must be a string."}


class StrictChoiceField(_Strict, serializers.ChoiceField):
    json_types = (str,)
    default_error_messages = {"wrong_type": "Must be one of the listed strings."}


class StrictIntegerField(_Strict, serializers.IntegerField):
    json_types = (int,)
    default_error_messages = {"wrong_type": "A valid integer is required."}


class StrictFloatField(_Strict, serializers.FloatField):
    json_types = (int, float)
    default_error_messages = {"wrong_type": "A valid number is required."}


class StrictBooleanField(_Strict, serializers.BooleanField):
    json_types = (bool,)
    default_error_messages = {"wrong_type": "Must be true or false."}
