"""A small, fast validator for event bodies that names the bad field.

DRF serializers are too slow for the ingestion hot path and jsonschema's
messages do not name a dotted field; events are flat JSON, so a few typed
field specs are all we need. `Schema.clean(data)` returns a new dict of
cleaned values or raises `SchemaError(message, field)`.

Every value a spec accepts fits the column it goes to, so a valid event never
fails in the database: strings are bounded by `max_length` (the column's), an
`Int` by default by PostgreSQL's bigint and money by `MAX_YEN`, a `DateTime`
lies in [`EARLIEST`, `LATEST`) (Python's datetime overflows near years 1 and
9999 once converted to UTC or to Japan's business day). The body itself was
parsed by `jsonsafe.json_loads_strict` (no NUL, no lone surrogate, bounded depth).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import ValidationFailed


class SchemaError(ValidationFailed):
    pass


_MISSING = object()
_SURROGATE = re.compile("[\ud800-\udfff]")

# PostgreSQL bigint: the default range of an Int, so no integer a spec accepts can overflow its column.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
# Money, in yen, of one event or one bill line: |amount| <= 10 billion yen. Far above any real payment, and
# small enough that any arithmetic on it stays in bigint: amount x rate in tenths of a percent (x 1,000),
# summed over a bill's 5,000 lines, is 5 x 10^16 < 9.2 x 10^18.
MAX_YEN = 10**10
# Times of events: from 2000 (the marketplace launched in 2013; backfills reach back to it) to 2100.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_DATETIME_MAX_LENGTH = 64


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
        if "\x00" in value or (not value.isascii() and _SURROGATE.search(value)):  # bodies not from json_loads_strict
            raise SchemaError(f"{name} contains NUL or a lone surrogate, not storable text", name)
        if self.choices is not None and value not in self.choices:
            raise SchemaError(f"{name} must be one of {', '.join(self.choices)}; got {value!r}", name)
        return value


@dataclass(frozen=True)
class Int:
    min_value: int | None = BIGINT_MIN
    max_value: int | None = BIGINT_MAX
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
        if len(value) > _DATETIME_MAX_LENGTH:
            raise SchemaError(f"{name} is not an RFC 3339 time (longer than {_DATETIME_MAX_LENGTH} characters)",
                              name)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise SchemaError(f"{name} is not an RFC 3339 time: {value!r}", name) from None
        if parsed.tzinfo is None:
            raise SchemaError(f"{name} must carry a UTC offset", name)
        try:
            parsed = parsed.astimezone(UTC)
        except OverflowError:  # "0001-01-01T00:00:00+14:00" is before year 1 in UTC
            parsed = None
        if parsed is None or not EARLIEST <= parsed < LATEST:
            raise SchemaError(f"{name} must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC); "
                              f"got {value!r}", name)
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
