"""A small, fast validator for event bodies that names the bad field.

DRF serializers are too slow for the ingestion hot path and jsonschema's
messages do not name a dotted field; events are flat JSON, so a few typed
field specs are all we need. `Schema.clean(data)` returns a new dict of
cleaned values or raises `SchemaError(message, field)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import ValidationFailed


class SchemaError(ValidationFailed):
    pass


_MISSING = object()


@dataclass(frozen=True)
class Str:
    max_length: int = 128
    choices: tuple[str, ...] | None = None
    required: bool = True
    nullable: bool = False

    def clean(self, value: Any, name: str) -> Any:
        if value is None and self.nullable:
            return None
        if not isinstance(value, str) or not value:
            raise SchemaError(f"{name} must be a non-empty string", name)
        if len(value) > self.max_length:
            raise SchemaError(f"{name} is longer than {self.max_length} characters", name)
        if self.choices is not None and value not in self.choices:
            raise SchemaError(f"{name} must be one of {', '.join(self.choices)}; got {value!r}", name)
        return value


@dataclass(frozen=True)
class Int:
    min_value: int | None = None
    max_value: int | None = None
    required: bool = True
    nullable: bool = False

    def clean(self, value: Any, name: str) -> Any:
        if value is None and self.nullable:
            return None
        # bool is an int subclass in Python; a JSON true is not an amount.
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(f"{name} must be an integer", name)
        if self.min_value is not None and value < self.min_value:
            raise SchemaError(f"{name} must be at least {self.min_value}", name)
        if self.max_value is not None and value > self.max_value:
            raise SchemaError(f"{name} must be at most {self.max_value}", name)
        return value


@dataclass(frozen=True)
class DateTime:
    """RFC 3339 with an offset; returned as an ISO string normalised to UTC."""

    required: bool = True
    nullable: bool = False
    future_tolerance: timedelta | None = None

    def parse(self, value: Any, name: str) -> datetime:
        if not isinstance(value, str):
            raise SchemaError(f"{name} must be an RFC 3339 time string", name)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise SchemaError(f"{name} is not an RFC 3339 time: {value!r}", name) from None
        if parsed.tzinfo is None:
            raise SchemaError(f"{name} must carry a UTC offset", name)
        parsed = parsed.astimezone(UTC)
        if self.future_tolerance is not None and parsed > datetime.now(UTC) + self.future_tolerance:
            raise SchemaError(f"{name} is in the future beyond the allowed tolerance", name)
        return parsed

    def clean(self, value: Any, name: str) -> Any:
        if value is None and self.nullable:
            return None
        return self.parse(value, name).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Dict:
    """A free-form object (e.g. attributes); values kept as given."""

    required: bool = True
    nullable: bool = False
    max_keys: int = 50

    def clean(self, value: Any, name: str) -> Any:
        if value is None and self.nullable:
            return None
        if not isinstance(value, dict):
            raise SchemaError(f"{name} must be an object", name)
        if len(value) > self.max_keys:
            raise SchemaError(f"{name} has more than {self.max_keys} keys", name)
        return value


@dataclass(frozen=True)
class List:
    item: Any
    min_items: int = 0
    max_items: int = 10_000
    required: bool = True
    nullable: bool = False

    def clean(self, value: Any, name: str) -> Any:
        if value is None and self.nullable:
            return None
        if not isinstance(value, list):
            raise SchemaError(f"{name} must be a list", name)
        if len(value) < self.min_items:
            raise SchemaError(f"{name} needs at least {self.min_items} item(s)", name)
        if len(value) > self.max_items:
            raise SchemaError(f"{name} has more than {self.max_items} items", name)
        return [self.item.clean(v, f"{name}.{i}") for i, v in enumerate(value)]


@dataclass(frozen=True)
class Schema:
    fields: dict[str, Any] = dc_field(default_factory=dict)
    required: bool = True
    nullable: bool = False

    def clean(self, data: Any, name: str = "") -> dict:
        if not isinstance(data, dict):
            raise SchemaError(f"{name or 'event'} must be a JSON object", name or None)
        cleaned = {}
        for key, spec in self.fields.items():
            dotted = f"{name}.{key}" if name else key
            value = data.get(key, _MISSING)
            if value is _MISSING:
                if spec.required:
                    raise SchemaError(f"{dotted} is required", dotted)
                continue
            cleaned[key] = spec.clean(value, dotted)
        return cleaned
