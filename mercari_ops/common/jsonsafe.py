"""Strict JSON for untrusted bodies: what it returns can be stored in PostgreSQL and walked without recursion.

Every entry point that parses a caller's bytes goes through `json_loads_strict` (Pub/Sub push envelopes and
their `data`, unwrapped pushes, the Braze webhook, DRF request bodies through `StrictJSONParser`, the
estimate's hot path, backfill lines). It refuses, with `ValidationFailed(message, field)` (a 400 naming the
path of the offending value, e.g. `items.0.merchant_id`):

- bytes that are not UTF-8 (RFC 8259; json.loads would also guess UTF-16/32);
- nesting deeper than `MAX_DEPTH`: json.loads, and every recursive walk after it, would raise
  RecursionError (500) near 1,000 levels; the depth is counted on the raw text, without recursion;
- NUL (U+0000) in any string or key: PostgreSQL text and jsonb cannot hold it (a DataError at insert, that
  used to fail a whole group commit);
- a lone surrogate (`"\\ud800"`) in any string or key: not text at all, it fails later when encoded
  (UnicodeEncodeError, 500);
- NaN, Infinity and numbers too large for a float (`1e400`): jsonb has no such values.

Cost: the common body (no `\\u` escape, fewer brackets than MAX_DEPTH) pays two str.count and one regex
search over the text beyond json.loads itself, a few microseconds for a 300-byte push; only a body that
may hold a problem is walked value by value (iteratively) to name the path.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from .errors import ValidationFailed

MAX_DEPTH = 64

# A `\u` escape of NUL or of a surrogate half: the only way such characters reach a str parsed from UTF-8
# (json.loads refuses raw control characters in strings, and UTF-8 cannot encode surrogates). A valid pair
# also matches, and an escaped backslash before "u0000" too: the walk tells them apart.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_SURROGATE = re.compile("[\ud800-\udfff]")
# A string to its closing quote, or to the end of an unterminated one: every match attempt succeeds and
# consumes, so the scan stays linear whatever the text (no retry from each quote inside a failed match).
_STRING = re.compile(r'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
_PATH_MAX = 128  # DeadLetter.field / InboxEvent.error_field


class JSONRefused(ValidationFailed):
    """An untrusted body that is not JSON we can store; `field` names where."""


def json_loads_strict(data: bytes | bytearray | memoryview | str, *, field: str = "body", prefix: str = "",
                      max_depth: int = MAX_DEPTH) -> Any:
    """Parse untrusted JSON, or raise JSONRefused naming the field.

    `field` names the document itself (errors about its bytes, syntax or depth); `prefix` is put before
    the path of a value inside it (the event inside a push envelope has none: its fields are `event_id`...).
    """
    if isinstance(data, str):
        text = data
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a str made by the caller may hold raw surrogates
                raise JSONRefused(f"{field} is not valid Unicode text (lone surrogate)", field) from None
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONRefused(f"{field} is not valid UTF-8 (at byte {exc.start})", field) from None
    if text.count("[") + text.count("{") > max_depth:
        _depth_check(text, field, max_depth)
    try:
        value = _DECODER.decode(text)
    except ValueError:  # JSONDecodeError, or an integer of more than sys.get_int_max_str_digits() digits
        raise JSONRefused(f"{field} is not valid JSON", field) from None
    except RecursionError:  # unreachable after the depth check; kept so no body can ever be a 500
        raise JSONRefused(f"{field} is nested more than {max_depth} levels deep", field) from None
    except _Refused as exc:
        raise JSONRefused(f"{field} holds {exc.args[0]}, which is not a JSON number we can store", field) from None
    if _SUSPECT_ESCAPE.search(text) is not None:
        _strings_check(value, prefix, field)
    return value


def path_storable(path: str) -> str:
    """A path shown back and stored (field columns): printable, no NUL or surrogate, at most 128 characters."""
    if not path.isprintable() or _SURROGATE.search(path):
        path = "".join(c if c.isprintable() and not _SURROGATE.match(c) else f"\\u{ord(c):04x}" for c in path)
    return path[:_PATH_MAX]


def text_storable(text: str) -> str:
    """Any str as PostgreSQL text: NUL and lone surrogates become U+FFFD."""
    if text.isascii():
        return text.replace("\x00", "\ufffd")
    return _SURROGATE.sub("\ufffd", text).replace("\x00", "\ufffd")


class _Refused(Exception):
    pass


def _constant_refuse(name: str):
    raise _Refused(name)


def _float_finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Refused(literal[:40])
    return value


def _depth_check(text: str, field: str, max_depth: int) -> None:
    """Nesting depth of the raw text, brackets inside strings not counted; no recursion, C-speed loops."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if max(accumulate(map(_DEPTH_DELTA.__getitem__, brackets)), default=0) > max_depth:
        raise JSONRefused(f"{field} is nested more than {max_depth} levels deep", field)


def _string_problem(value: str) -> str | None:
    if "\x00" in value:
        return "a NUL character (U+0000), which cannot be stored"
    if not value.isascii() and _SURROGATE.search(value):
        return "a lone surrogate (half of a UTF-16 pair), which is not text"
    return None


def _strings_check(value: Any, prefix: str, field: str) -> None:
    """Walk the parsed value (iteratively, in document order) for the first string or key that cannot be stored."""
    stack: list[tuple[Any, str]] = [(value, prefix)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            problem = _string_problem(node)
            if problem:
                name = path_storable(path) or field
                raise JSONRefused(f"{name} contains {problem}", name)
        elif isinstance(node, dict):
            children = []
            for key, child in node.items():
                child_path = f"{path}.{key}" if path else key
                problem = _string_problem(key)
                if problem:
                    name = path_storable(child_path)
                    raise JSONRefused(f"the key {name} contains {problem}", name)
                children.append((child, child_path))
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(child, f"{path}.{index}" if path else str(index))
                                   for index, child in enumerate(node)]))


# One decoder made once: json.loads with hooks would build a new JSONDecoder on every call (about a
# microsecond, twice per wrapped push).
_DECODER = json.JSONDecoder(parse_constant=_constant_refuse, parse_float=_float_finite)
