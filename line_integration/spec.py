"""Validation against LINE's official OpenAPI documents (copied unchanged into sandbox/specs/).

OpenAPI 3.0 schemas are JSON Schema draft 4 plus a few keywords. The one that
matters is `discriminator` (a `Message` is a `TextMessage`, `FlexMessage`, ...
by its `type`), which jsonschema does not know: we add it as a keyword that
re-validates the instance against the mapped schema. Sub-schemas reach their
base through `allOf: [$ref: Message]`; those references are pointed at a copy of
the base without its discriminator so the dispatch cannot loop.

Used by the sandbox (every request it receives), by the template admin (a
template must render to valid messages) and by the tests (webhook bodies).

`errors` first asks a check compiled once from the same documents (`_check`, plain
closures instead of jsonschema's per-descent `$ref` resolution); only what it does
not accept goes through jsonschema (`_errors_reference`), whose findings are worded as
LINE words them (`must be specified`, `May not be empty`, `Length must be between 0 and
5000`, `Size must be between 1 and 5`, property paths like `messages[0].text`).
LINE's documented limits that the documents lack (text length, ...) are added to the
loaded documents (`LINE_LIMITS`); the files themselves stay unchanged.
"""

from __future__ import annotations

import copy
import numbers
import re
from functools import cache
from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from .text_length import TEXT_MAX, utf16_length

SPEC_DIR = Path(__file__).resolve().parent / "sandbox" / "specs"
SPEC_FILES = {"messaging": "messaging-api.yml", "audience": "manage-audience.yml", "webhook": "webhook.yml"}


def _discriminator(validator, discriminator, instance, schema):
    if not isinstance(instance, dict):
        return
    name = discriminator["propertyName"]
    mapping = discriminator.get("mapping", {})
    value = instance.get(name)
    target = mapping.get(value) if isinstance(value, str) else None  # a list or an object is no type either
    if target is None:
        # An unknown (or missing) type: LINE answers 400 naming the property and the types it knows.
        message = (f"Must be one of the following values: [{', '.join(mapping)}]" if name in instance
                   else "must be specified")
        yield jsonschema.ValidationError(message, path=[name])
        return
    yield from validator.descend(instance, {"$ref": target})


def _nullable(validator, nullable, instance, schema):
    return iter(())


def _length(instance: str, schema: dict) -> int:
    return utf16_length(instance) if schema.get("x-count") == "utf16" else len(instance)


def _min_length(validator, low, instance, schema):
    if isinstance(instance, str) and _length(instance, schema) < low:
        yield jsonschema.ValidationError(f"{instance!r} is too short")


def _max_length(validator, high, instance, schema):
    if isinstance(instance, str) and _length(instance, schema) > high:
        yield jsonschema.ValidationError(f"{instance!r} is too long")


_Validator = jsonschema.validators.extend(
    jsonschema.Draft4Validator,
    {"discriminator": _discriminator, "nullable": _nullable, "minLength": _min_length, "maxLength": _max_length},
)


# Limits of LINE's API reference (developers.line.biz, "Message objects") that the OpenAPI documents do not
# carry: LINE refuses a message over them with a 400 like any other ("May not be empty", "Length must be
# between 0 and 5000"). Added to the loaded document, so the compiled check and jsonschema both apply them.
# Texts are counted as LINE counts them, in UTF-16 code units (`x-count`); the other lengths in code points.
_UTF16 = {"x-count": "utf16"}
LINE_LIMITS = {
    "messaging": {
        ("TextMessage", "text"): {"minLength": 1, "maxLength": TEXT_MAX, **_UTF16},
        ("TextMessageV2", "text"): {"minLength": 1, "maxLength": TEXT_MAX, **_UTF16},
        ("FlexMessage", "altText"): {"minLength": 1, "maxLength": 1500, **_UTF16},
        ("TemplateMessage", "altText"): {"minLength": 1, "maxLength": 1500, **_UTF16},
        ("ImagemapMessage", "altText"): {"minLength": 1, "maxLength": 1500, **_UTF16},
        ("ImageMessage", "originalContentUrl"): {"minLength": 1, "maxLength": 2000},
        ("ImageMessage", "previewImageUrl"): {"minLength": 1, "maxLength": 2000},
        ("VideoMessage", "originalContentUrl"): {"minLength": 1, "maxLength": 2000},
        ("VideoMessage", "previewImageUrl"): {"minLength": 1, "maxLength": 2000},
        ("AudioMessage", "originalContentUrl"): {"minLength": 1, "maxLength": 2000},
        ("LocationMessage", "title"): {"minLength": 1, "maxLength": 100},
        ("LocationMessage", "address"): {"minLength": 1, "maxLength": 100},
    },
}


def _limits_add(schemas: dict, limits: dict) -> None:
    for (schema_name, property_name), keywords in limits.items():
        schema = schemas[schema_name]
        holders = [schema, *(part for part in schema.get("allOf", []) if isinstance(part, dict))]
        found = [holder["properties"][property_name] for holder in holders
                 if property_name in holder.get("properties", {})]
        if len(found) != 1 or "$ref" in found[0]:
            raise ValueError(f"LINE_LIMITS: {schema_name}.{property_name} is not a plain property of the document")
        found[0].update(keywords)


def _prepare(document: dict, kind: str = "") -> dict:
    """Point every `allOf` back-reference to a discriminated base at a copy without the discriminator, and
    add LINE's documented limits (LINE_LIMITS)."""
    document = copy.deepcopy(document)
    schemas = document["components"]["schemas"]
    _limits_add(schemas, LINE_LIMITS.get(kind, {}))
    bases = [name for name, schema in schemas.items() if isinstance(schema, dict) and "discriminator" in schema]
    for name in bases:
        plain = {k: v for k, v in schemas[name].items() if k != "discriminator"}
        schemas[f"{name}__base"] = plain
    base_refs = {f"#/components/schemas/{name}": f"#/components/schemas/{name}__base" for name in bases}

    def rewrite(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "allOf" and isinstance(value, list):
                    for item in value:
                        if isinstance(item, dict) and item.get("$ref") in base_refs:
                            item["$ref"] = base_refs[item["$ref"]]
                rewrite(value)
        elif isinstance(node, list):
            for item in node:
                rewrite(item)

    rewrite(schemas)
    return document


@cache
def _document(kind: str) -> dict:
    with open(SPEC_DIR / SPEC_FILES[kind], encoding="utf-8") as handle:
        return _prepare(yaml.safe_load(handle), kind)


@cache
def validator(kind: str, schema_name: str):
    """A compiled validator for components/schemas/<schema_name> of one spec file."""
    document = _document(kind)
    uri = f"urn:line:{kind}"
    registry = Registry().with_resource(uri, Resource(contents=document, specification=DRAFT4))
    _check(kind, schema_name)  # compiled with it, so a caller warming up validators warms errors() too
    return _Validator({"$ref": f"{uri}#/components/schemas/{schema_name}"}, registry=registry)


# ---- compiled check ---------------------------------------------------------------------------------
# jsonschema resolves every `$ref` through `referencing` and builds a new validator on every descent: a
# push body costs ~0.2 ms, a flex one ~2 ms. The same keywords, compiled once per schema into plain
# closures (non-recursive `$ref`s inlined, recursive ones through one indirection, the discriminator a
# dict lookup), give the same verdict at a small fraction of that. It only says yes or no: a "no" goes to
# jsonschema for the details. A keyword jsonschema knows but this does not (anyOf, oneOf, not, ...)
# makes the whole schema go to jsonschema (`_check` is None), it is never ignored.

_LOCAL_REF = re.compile(r"#/components/schemas/([A-Za-z0-9_.-]+)")
_TYPES = {
    "array": lambda x: isinstance(x, list),
    "boolean": lambda x: isinstance(x, bool),
    "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
    "null": lambda x: x is None,
    "number": lambda x: isinstance(x, numbers.Number) and not isinstance(x, bool),
    "object": lambda x: isinstance(x, dict),
    "string": lambda x: isinstance(x, str),
}  # jsonschema's draft 4 type checker: 1.0 is not an integer, True is not a number


class _Unsupported(Exception):
    pass


def _always(instance) -> bool:
    return True


def _all(checks: list):
    checks = [check for check in checks if check is not _always]
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda x: first(x) and second(x)
    checks = tuple(checks)

    def every(x):
        for check in checks:
            if not check(x):
                return False
        return True
    return every


class _Compiler:
    """Draft 4 (as extended above, with `$ref` siblings ignored) to closures, for one spec document."""

    def __init__(self, document: dict):
        self.schemas = document["components"]["schemas"]
        self.named: dict[str, list] = {}  # name -> [check], [None] while it is being compiled

    def ref(self, ref):
        match = _LOCAL_REF.fullmatch(ref) if isinstance(ref, str) else None
        if match is None or match[1] not in self.schemas:
            raise _Unsupported(f"$ref {ref!r}")
        cell = self.named.get(match[1])
        if cell is None:
            cell = self.named[match[1]] = [None]
            cell[0] = self.schema(self.schemas[match[1]])
        if cell[0] is not None:
            return cell[0]
        return lambda x: cell[0](x)  # a reference back into a schema being compiled (Flex boxes contain boxes)

    def schema(self, node):
        if not isinstance(node, dict):
            raise _Unsupported(f"schema {node!r}")
        if node.get("$ref") is not None:
            return self.ref(node["$ref"])
        if "$ref" in node or "id" in node:
            raise _Unsupported("$ref or id")  # jsonschema would fail, or move the base URI
        checks, object_checks = [], []
        for keyword, value in node.items():
            if keyword not in _Validator.VALIDATORS or keyword in ("nullable", "format"):
                continue  # annotations; `nullable` is a no-op above; no format checker is configured
            make = getattr(self, f"k_{keyword}", None)
            if make is None:
                raise _Unsupported(keyword)
            check = make(value, node)
            (object_checks if keyword in self.OBJECT_KEYWORDS else checks).append(check)
        if object_checks:
            on_objects = _all(object_checks)
            checks.append(lambda x: not isinstance(x, dict) or on_objects(x))
        return _all(checks)

    OBJECT_KEYWORDS = {"required", "properties", "additionalProperties", "discriminator"}

    def k_type(self, value, node):
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(name in _TYPES for name in names):
            raise _Unsupported(f"type {value!r}")
        if len(names) == 1:
            return _TYPES[names[0]]
        checks = tuple(_TYPES[name] for name in names)
        return lambda x: any(check(x) for check in checks)

    def k_enum(self, value, node):
        if not isinstance(value, list) or not all(isinstance(each, str) for each in value):
            raise _Unsupported(f"enum {value!r}")  # only strings: jsonschema's equality is plain == for them
        allowed = frozenset(value)
        return lambda x: isinstance(x, str) and x in allowed

    def k_allOf(self, value, node):
        if not isinstance(value, list):
            raise _Unsupported(f"allOf {value!r}")
        return _all([self.schema(each) for each in value])

    def k_required(self, value, node):
        if not isinstance(value, list):
            raise _Unsupported(f"required {value!r}")
        names = tuple(value)
        return lambda x: all(name in x for name in names)

    def k_properties(self, value, node):
        if not isinstance(value, dict):
            raise _Unsupported(f"properties {value!r}")
        checks = {name: self.schema(schema) for name, schema in value.items()}
        checks = {name: check for name, check in checks.items() if check is not _always}
        if not checks:
            return _always

        def properties(x):
            for name, item in x.items():
                check = checks.get(name)
                if check is not None and not check(item):
                    return False
            return True
        return properties

    def k_additionalProperties(self, value, node):
        if "patternProperties" in node:
            raise _Unsupported("patternProperties")
        declared = frozenset(node.get("properties", {}))
        if isinstance(value, dict):
            check = self.schema(value)
            return lambda x: all(check(item) for name, item in x.items() if name not in declared)
        if value is True:
            return _always
        if value is False:
            return lambda x: all(name in declared for name in x)
        raise _Unsupported(f"additionalProperties {value!r}")

    def k_discriminator(self, value, node):
        if not isinstance(value, dict) or "propertyName" not in value:
            raise _Unsupported(f"discriminator {value!r}")
        name = value["propertyName"]
        targets = {key: self.ref(target) for key, target in value.get("mapping", {}).items()}

        def discriminator(x):
            value = x.get(name)
            check = targets.get(value) if isinstance(value, str) else None
            return check is not None and check(x)
        return discriminator

    def k_items(self, value, node):
        if not isinstance(value, dict):
            raise _Unsupported("items as a list")
        check = self.schema(value)
        if check is _always:
            return _always
        return lambda x: not isinstance(x, list) or all(check(item) for item in x)

    def k_minItems(self, value, node):
        return lambda x: not isinstance(x, list) or len(x) >= value

    def k_maxItems(self, value, node):
        return lambda x: not isinstance(x, list) or len(x) <= value

    def k_minLength(self, value, node):
        length = utf16_length if node.get("x-count") == "utf16" else len
        return lambda x: not isinstance(x, str) or length(x) >= value

    def k_maxLength(self, value, node):
        length = utf16_length if node.get("x-count") == "utf16" else len
        return lambda x: not isinstance(x, str) or length(x) <= value

    def k_pattern(self, value, node):
        search = re.compile(value).search
        return lambda x: not isinstance(x, str) or search(x) is not None

    def k_minimum(self, value, node):
        number = _TYPES["number"]
        if node.get("exclusiveMinimum", False):
            return lambda x: not number(x) or not x <= value
        return lambda x: not number(x) or not x < value

    def k_maximum(self, value, node):
        number = _TYPES["number"]
        if node.get("exclusiveMaximum", False):
            return lambda x: not number(x) or not x >= value
        return lambda x: not number(x) or not x > value


@cache
def _check(kind: str, schema_name: str):
    """check(instance) -> True when valid, for components/schemas/<schema_name>; None if it cannot be compiled."""
    try:
        return _Compiler(_document(kind)).ref(f"#/components/schemas/{schema_name}")
    except Exception:  # _Unsupported, or a document shaped unlike the ones we have: jsonschema answers alone
        return None


def errors(kind: str, schema_name: str, instance) -> list[dict]:
    """LINE's error details [{"message", "property"}] in LINE's wording, empty when the instance is valid.

    The compiled check answers for valid instances (the hot path); anything it does not accept, and
    anything it fails on, is answered by jsonschema itself, whose findings `_errors_reference` words as LINE does.
    """
    check = _check(kind, schema_name)
    if check is not None:
        try:
            if check(instance):
                return []
        except Exception:  # e.g. a too deep instance: jsonschema decides
            pass
    return _errors_reference(kind, schema_name, instance)


# A value of the wrong JSON type is a body LINE cannot read: it answers this message alone (no details).
INVALID_PROPERTY = "The property, '{}', in the request body is invalid (line: -, column: -)"
UNREADABLE_BODY = "The request body could not be parsed as JSON (line: 1, column: 1)"
_REQUIRED = re.compile(r"^'(?P<name>(?:[^'\\]|\\.)*)' is a required property$")
_JAVA_INT_MAX = 2147483647


def property_path(parts) -> str:
    """LINE's name for a place in the body: messages[0].contents.body.contents[1].text."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_detail(error) -> dict:
    """One jsonschema finding as LINE words it (never the instance's repr)."""
    path = list(error.absolute_path)
    keyword, value, schema = error.validator, error.validator_value, error.schema
    if keyword == "required":
        match = _REQUIRED.match(error.message)
        return {"message": "must be specified", "property": property_path(path + [match["name"] if match else ""])}
    if keyword == "discriminator":
        return {"message": error.message, "property": property_path(path)}
    if keyword == "type":
        return {"message": INVALID_PROPERTY.format(property_path(path)), "property": property_path(path)}
    if keyword in ("minLength", "maxLength"):
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if error.instance == "" and low >= 1:
            message = "May not be empty"
        elif high is None:
            message = f"Length must be at least {low}"
        else:  # a minLength of 1 is LINE's separate "not empty" rule; its size rule starts at 0
            message = f"Length must be between {0 if low == 1 else low} and {high}"
        return {"message": message, "property": property_path(path)}
    if keyword in ("minItems", "maxItems"):
        low, high = schema.get("minItems", 0), schema.get("maxItems", _JAVA_INT_MAX)
        return {"message": f"Size must be between {low} and {high}", "property": property_path(path)}
    if keyword == "enum":
        return {"message": f"Must be one of the following values: [{', '.join(map(str, value))}]",
                "property": property_path(path)}
    if keyword == "pattern":
        return {"message": f'must match "{value}"', "property": property_path(path)}
    if keyword == "minimum":
        return {"message": f"must be greater than or equal to {value}", "property": property_path(path)}
    if keyword == "maximum":
        return {"message": f"must be less than or equal to {value}", "property": property_path(path)}
    return {"message": "Invalid value", "property": property_path(path)}


def _errors_reference(kind: str, schema_name: str, instance) -> list[dict]:
    """The details as jsonschema finds them, in LINE's wording (the reference the compiled check agrees with)."""
    found = []
    for error in validator(kind, schema_name).iter_errors(instance):
        leaf = error
        while leaf.context:
            leaf = min(leaf.context, key=lambda e: len(e.absolute_path))
        detail = _line_detail(leaf)
        if detail not in found:  # a missing type is both `required` and the discriminator's
            found.append(detail)
        if len(found) >= 10:
            break
    return found


def messages_errors(messages) -> list[dict]:
    """Validate a list of LINE message objects as they would appear in a push request."""
    return errors("messaging", "PushMessageRequest", {"to": "U" + "0" * 32, "messages": messages})
