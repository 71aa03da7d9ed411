"""Validation against LINE's official OpenAPI documents (copied unchanged into sandbox/specs/).

OpenAPI 3.0 schemas are JSON Schema draft 4 plus a few keywords. The one that
matters is `discriminator` (a `Message` is a `TextMessage`, `FlexMessage`, ...
by its `type`), which jsonschema does not know: we add it as a keyword that
re-validates the instance against the mapped schema. Sub-schemas reach their
base through `allOf: [$ref: Message]`; those references are pointed at a copy of
the base without its discriminator so the dispatch cannot loop.

Used by the sandbox (every request it receives), by the template admin (a
template must render to valid messages) and by the tests (webhook bodies).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_DIR = Path(__file__).resolve().parent / "sandbox" / "specs"
SPEC_FILES = {"messaging": "messaging-api.yml", "audience": "manage-audience.yml", "webhook": "webhook.yml"}


def _discriminator(validator, discriminator, instance, schema):
    if not isinstance(instance, dict):
        return
    value = instance.get(discriminator["propertyName"])
    target = discriminator.get("mapping", {}).get(value)
    if target is None:
        # Unknown types are reported by the caller's `type` rules; LINE answers 400 for them too.
        yield jsonschema.ValidationError(f"unknown {discriminator['propertyName']} {value!r}")
        return
    yield from validator.descend(instance, {"$ref": target})


def _nullable(validator, nullable, instance, schema):
    return iter(())


_Validator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"discriminator": _discriminator, "nullable": _nullable}
)


def _prepare(document: dict) -> dict:
    """Point every `allOf` back-reference to a discriminated base at a copy without the discriminator."""
    document = copy.deepcopy(document)
    schemas = document["components"]["schemas"]
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
        return _prepare(yaml.safe_load(handle))


@cache
def validator(kind: str, schema_name: str):
    """A compiled validator for components/schemas/<schema_name> of one spec file."""
    document = _document(kind)
    uri = f"urn:line:{kind}"
    registry = Registry().with_resource(uri, Resource(contents=document, specification=DRAFT4))
    return _Validator({"$ref": f"{uri}#/components/schemas/{schema_name}"}, registry=registry)


def errors(kind: str, schema_name: str, instance) -> list[dict]:
    """LINE-style error details [{"message", "property"}], empty when the instance is valid."""
    found = []
    for error in validator(kind, schema_name).iter_errors(instance):
        leaf = error
        while leaf.context:
            leaf = min(leaf.context, key=lambda e: len(e.absolute_path))
        path = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in leaf.absolute_path).replace(".[", "[")
        found.append({"message": leaf.message[:300], "property": path})
        if len(found) >= 10:
            break
    return found


def messages_errors(messages) -> list[dict]:
    """Validate a list of LINE message objects as they would appear in a push request."""
    return errors("messaging", "PushMessageRequest", {"to": "U" + "0" * 32, "messages": messages})
