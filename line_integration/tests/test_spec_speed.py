"""The compiled spec check (spec._check, the fast path of spec.errors) agrees with jsonschema.

These are correctness tests, not timings: for valid and invalid bodies, and for seeded random
mutations of them, the compiled verdict must be jsonschema's verdict (the validator built the old
way, spec.validator) and spec.errors must return exactly the details of spec._errors_reference.
"""

import copy
import random

import pytest

from line_integration import spec
from line_integration.sandbox.behaviour import BODY_SCHEMAS

USER = "U" + "0123456789abcdef" * 2
TEXT = {"type": "text", "text": "Hello Taro, your item 12345 has shipped and will arrive tomorrow."}
URI_ACTION = {"type": "uri", "label": "Track", "uri": "https://example.com/t/1"}
POSTBACK = {"type": "postback", "label": "Yes", "data": "answer=yes", "displayText": "Yes"}
BUBBLE = {"type": "bubble", "size": "mega", "hero": {"type": "image", "url": "https://example.com/a.png",
                                                     "size": "full", "aspectMode": "cover"},
          "body": {"type": "box", "layout": "vertical", "spacing": "md", "contents": [
              {"type": "text", "text": "Order shipped", "weight": "bold", "size": "xl", "wrap": True},
              {"type": "box", "layout": "horizontal", "contents": [
                  {"type": "icon", "url": "https://example.com/i.png"},
                  {"type": "text", "text": "Item", "flex": 1},
                  {"type": "text", "contents": [{"type": "span", "text": "Camera", "weight": "bold"}], "flex": 2}]},
              {"type": "separator", "margin": "md"},
              {"type": "filler"},
              {"type": "box", "layout": "baseline", "contents": [], "background": {
                  "type": "linearGradient", "angle": "90deg", "startColor": "#000000", "endColor": "#ffffff"}}]},
          "footer": {"type": "box", "layout": "vertical", "contents": [
              {"type": "button", "style": "primary", "action": URI_ACTION}]}}
FLEX = {"type": "flex", "altText": "Order", "contents": BUBBLE}
CAROUSEL = {"type": "flex", "altText": "Orders", "contents": {"type": "carousel", "contents": [BUBBLE, BUBBLE]}}
BUTTONS = {"type": "template", "altText": "Choose", "template": {
    "type": "buttons", "thumbnailImageUrl": "https://example.com/t.png", "title": "Menu", "text": "Please select",
    "defaultAction": URI_ACTION, "actions": [POSTBACK, {"type": "message", "label": "Hi", "text": "Hi"}, URI_ACTION,
                                             {"type": "datetimepicker", "label": "When", "data": "d", "mode": "date"}]}}
CONFIRM = {"type": "template", "altText": "Sure?", "template": {"type": "confirm", "text": "Sure?",
                                                                 "actions": [POSTBACK, POSTBACK]}}
TEMPLATE_CAROUSEL = {"type": "template", "altText": "Pick", "template": {"type": "carousel", "columns": [
    {"title": "A", "text": "a", "actions": [POSTBACK]}, {"text": "b", "actions": [URI_ACTION]}]}}
IMAGE_CAROUSEL = {"type": "template", "altText": "Pick", "template": {"type": "image_carousel", "columns": [
    {"imageUrl": "https://example.com/1.png", "action": URI_ACTION}]}}
OTHERS = [
    {"type": "sticker", "packageId": "446", "stickerId": "1988"},
    {"type": "image", "originalContentUrl": "https://example.com/o.jpg", "previewImageUrl": "https://example.com/p.jpg"},
    {"type": "location", "title": "Office", "address": "Tokyo", "latitude": 35.65, "longitude": 139},
    {"type": "imagemap", "baseUrl": "https://example.com/map", "altText": "map",
     "baseSize": {"width": 1040, "height": 1040},
     "actions": [{"type": "uri", "linkUri": "https://example.com",
                  "area": {"x": 0, "y": 0, "width": 520, "height": 1040}},
                 {"type": "message", "text": "hi", "area": {"x": 520, "y": 0, "width": 520, "height": 1040}}]},
    {"type": "textV2", "text": "Hi {user} {smile}", "substitution": {
        "user": {"type": "mention", "mentionee": {"type": "user", "userId": USER}},
        "smile": {"type": "emoji", "productId": "5ac1bfd5040ab15980c9b435", "emojiId": "002"}}},
    {"type": "text", "text": "$ hi", "emojis": [{"index": 0, "productId": "p", "emojiId": "001"}],
     "quoteToken": "q", "sender": {"name": "Shop", "iconUrl": "https://example.com/i.png"},
     "quickReply": {"items": [{"type": "action", "action": POSTBACK},
                              {"type": "action", "imageUrl": "https://example.com/q.png", "action": URI_ACTION}]}},
]


def push(*messages, **extra):
    return {"to": USER, "messages": list(messages), **extra}


VALID = [
    ("messaging", "PushMessageRequest", push(TEXT)),
    ("messaging", "PushMessageRequest", push(TEXT, notificationDisabled=True, customAggregationUnits=["unit_1"])),
    ("messaging", "PushMessageRequest", push(FLEX)),
    ("messaging", "PushMessageRequest", push(CAROUSEL)),
    ("messaging", "PushMessageRequest", push(BUTTONS, CONFIRM, TEMPLATE_CAROUSEL, IMAGE_CAROUSEL)),
    ("messaging", "PushMessageRequest", push(*OTHERS[:5])),
    ("messaging", "PushMessageRequest", push(OTHERS[5])),
    ("messaging", "PushMessageRequest", push(dict(TEXT, text="x" * 5000))),  # LINE's limit (spec.LINE_LIMITS)
    ("messaging", "PushMessageRequest", push(dict(TEXT, text="\U0001F34E" * 2500))),  # 5,000 UTF-16 units
    ("messaging", "PushMessageRequest", push(dict(OTHERS[5], sender={"iconUrl": "not a uri"}))),  # no format check
    ("messaging", "MulticastRequest", {"to": [f"U{i:032x}" for i in range(500)], "messages": [TEXT, FLEX]}),
    ("messaging", "ReplyMessageRequest", {"replyToken": "r" * 32, "messages": [TEXT], "notificationDisabled": False}),
    ("audience", "CreateAudienceGroupRequest", {"description": "spring sale", "isIfaAudience": False,
                                                "uploadDescription": "first", "audiences": [{"id": USER}]}),
    ("audience", "AddAudienceToAudienceGroupRequest", {"audienceGroupId": 1000, "uploadDescription": "more",
                                                       "audiences": [{"id": USER}, {"id": "U" + "1" * 32}]}),
]

INVALID = [
    ("messaging", "PushMessageRequest", {"to": 12345, "messages": [TEXT]}),  # bad `to`
    ("messaging", "PushMessageRequest", {"to": None, "messages": [TEXT]}),
    ("messaging", "PushMessageRequest", {"messages": [TEXT]}),
    ("messaging", "PushMessageRequest", {"to": USER}),  # missing messages
    ("messaging", "PushMessageRequest", push()),
    ("messaging", "PushMessageRequest", push(*[TEXT] * 6)),  # too many messages
    ("messaging", "PushMessageRequest", push({"type": "text"})),
    ("messaging", "PushMessageRequest", push({"type": "bogus", "text": "x"})),  # unknown message type
    ("messaging", "PushMessageRequest", push({"text": "no type"})),
    ("messaging", "PushMessageRequest", push({"type": 1, "text": "x"})),
    ("messaging", "PushMessageRequest", push("text")),
    ("messaging", "PushMessageRequest", push(dict(TEXT, text=5))),
    ("messaging", "PushMessageRequest", push(dict(TEXT, text="x" * 5001))),  # LINE's limits (spec.LINE_LIMITS)
    ("messaging", "PushMessageRequest", push(dict(TEXT, text="\U0001F34E" * 2501))),  # 5,002 UTF-16 units
    ("messaging", "PushMessageRequest", push(dict(FLEX, altText="\U0001F34E" * 751))),
    ("messaging", "PushMessageRequest", push(dict(TEXT, text=""))),
    ("messaging", "PushMessageRequest", push(dict(FLEX, altText="a" * 1501))),
    ("messaging", "PushMessageRequest", push({"type": ["text"], "text": "x"})),  # an unhashable type
    ("messaging", "PushMessageRequest", push(dict(TEXT, sender={"name": "n" * 21}))),  # maxLength
    ("messaging", "PushMessageRequest", push(TEXT, notificationDisabled="yes")),
    ("messaging", "MulticastRequest", {"to": [USER], "messages": [TEXT], "customAggregationUnits": ["a", "b"]}),
    ("messaging", "MulticastRequest", {"to": [USER], "messages": [TEXT], "customAggregationUnits": ["no space"]}),
    ("messaging", "PushMessageRequest", {"to": USER, "messages": {"type": "text", "text": "x"}}),
    ("messaging", "PushMessageRequest", [TEXT]),
    ("messaging", "PushMessageRequest", None),
    # flex: a nested component is wrong
    ("messaging", "PushMessageRequest", push({**FLEX, "contents": {**BUBBLE, "body": {
        "type": "box", "layout": "vertical", "contents": [{"type": "box", "layout": "diagonal", "contents": []}]}}})),
    ("messaging", "PushMessageRequest", push({**FLEX, "contents": {**BUBBLE, "body": {
        "type": "box", "layout": "vertical", "contents": [{"type": "box", "layout": "vertical", "contents": [
            {"type": "text", "text": "x", "flex": "1"}]}]}}})),
    ("messaging", "PushMessageRequest", push({**FLEX, "contents": {**BUBBLE, "body": {
        "type": "box", "layout": "vertical", "contents": [{"type": "button"}]}}})),  # button without action
    ("messaging", "PushMessageRequest", push({**FLEX, "contents": {**BUBBLE, "body": {
        "type": "box", "layout": "vertical", "contents": [{"type": "widget"}]}}})),
    ("messaging", "PushMessageRequest", push({**FLEX, "contents": {"type": "carousel", "contents": [
        BUBBLE, {"type": "bubble", "size": "huge"}]}})),
    ("messaging", "PushMessageRequest", push({**FLEX, "contents": {"type": "bubble", "body": {
        "type": "box", "layout": "vertical", "contents": [], "background": {"type": "radial"}}}})),
    ("messaging", "PushMessageRequest", push({**BUTTONS, "template": {**BUTTONS["template"], "actions": [
        {"type": "postback", "data": "d" * 301}]}})),
    ("messaging", "PushMessageRequest", push({**BUTTONS, "template": {**BUTTONS["template"], "actions": [
        {"label": "no type"}]}})),
    ("messaging", "PushMessageRequest", push({**OTHERS[4], "substitution": {"user": {"type": "mention"}}})),
    ("messaging", "PushMessageRequest", push({**OTHERS[4], "substitution": {"user": "x"}})),  # additionalProperties
    ("messaging", "PushMessageRequest", push({**OTHERS[2], "latitude": "35"})),
    ("messaging", "PushMessageRequest", push({**OTHERS[2], "latitude": True})),
    ("messaging", "PushMessageRequest", push({**OTHERS[3], "baseSize": {"width": 1040.0, "height": 1040}})),
    ("messaging", "PushMessageRequest", push(dict(OTHERS[5], quickReply={"items": [{"action": POSTBACK}] * 14}))),
    ("messaging", "MulticastRequest", {"to": [USER] * 501, "messages": [TEXT]}),
    ("messaging", "MulticastRequest", {"to": [], "messages": [TEXT]}),
    ("messaging", "MulticastRequest", {"to": [USER, 5], "messages": [TEXT]}),
    ("messaging", "MulticastRequest", {"to": USER, "messages": [TEXT]}),
    ("messaging", "ReplyMessageRequest", {"messages": [TEXT]}),
    ("audience", "CreateAudienceGroupRequest", {"description": "d" * 121, "audiences": [{"id": USER}]}),
    ("audience", "CreateAudienceGroupRequest", {"description": "d", "isIfaAudience": "no"}),
    ("audience", "CreateAudienceGroupRequest", {"description": "d", "audiences": [{"id": 5}]}),
    ("audience", "CreateAudienceGroupRequest", {"description": "d", "audiences": [USER]}),
    ("audience", "AddAudienceToAudienceGroupRequest", {"audienceGroupId": "1000", "audiences": [{"id": USER}]}),
    ("audience", "AddAudienceToAudienceGroupRequest", {"audienceGroupId": 1000, "audiences": {"id": USER}}),
    ("audience", "AddAudienceToAudienceGroupRequest", {"audienceGroupId": 10.5, "audiences": []}),
]

# A spec `nullable: true` is a no-op here, as it always was (jsonschema's draft 4 `type` refuses None).
NULLABLE = [("audience", "AudienceGroupFailedType", value) for value in (None, "INTERNAL_ERROR", "OTHER", 1)]


def same_as_jsonschema(kind, name, body):
    """The compiled verdict is jsonschema's and errors() gives exactly the reference details."""
    reference = spec._errors_reference(kind, name, body)
    assert spec.errors(kind, name, body) == reference
    check = spec._check(kind, name)
    assert check is not None
    assert check(body) is (not reference), (kind, name, body, reference)
    assert spec.validator(kind, name).is_valid(body) is (not reference)
    return reference


@pytest.mark.parametrize(("kind", "name", "body"), VALID)
def test_valid_bodies_are_accepted_by_the_compiled_check(kind, name, body):
    assert same_as_jsonschema(kind, name, body) == []


@pytest.mark.parametrize(("kind", "name", "body"), INVALID)
def test_invalid_bodies_get_the_reference_details(kind, name, body):
    details = same_as_jsonschema(kind, name, body)
    assert details and all(set(detail) == {"message", "property"} for detail in details)


def test_details_name_the_offending_leaf_in_lines_wording():
    assert spec.errors("messaging", "PushMessageRequest", {"to": 1, "messages": [TEXT]}) == [
        {"message": "The property, 'to', in the request body is invalid (line: -, column: -)", "property": "to"}]
    assert spec.errors("messaging", "PushMessageRequest", push({"type": "text"})) == [
        {"message": "must be specified", "property": "messages[0].text"}]
    nested = push({**FLEX, "contents": {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [
        {"type": "box", "layout": "vertical", "contents": [{"type": "text", "text": "x", "flex": "1"}]}]}}})
    assert spec.errors("messaging", "PushMessageRequest", nested) == [
        {"message": "The property, 'messages[0].contents.body.contents[0].contents[0].flex', in the request body is "
                    "invalid (line: -, column: -)",
         "property": "messages[0].contents.body.contents[0].contents[0].flex"}]


def test_lines_documented_limits_and_wording():
    assert spec.errors("messaging", "PushMessageRequest", push(dict(TEXT, text="x" * 5001))) == [
        {"message": "Length must be between 0 and 5000", "property": "messages[0].text"}]
    assert spec.errors("messaging", "PushMessageRequest", push(dict(TEXT, text=""))) == [
        {"message": "May not be empty", "property": "messages[0].text"}]
    assert spec.errors("messaging", "PushMessageRequest", push(*[TEXT] * 6)) == [
        {"message": "Size must be between 1 and 5", "property": "messages"}]
    assert spec.errors("messaging", "PushMessageRequest", {"to": USER}) == [
        {"message": "must be specified", "property": "messages"}]
    unknown = spec.errors("messaging", "PushMessageRequest", push({"type": "bogus", "text": "x"}))
    assert unknown == [{"message": "Must be one of the following values: [text, textV2, sticker, image, video, "
                                   "audio, location, imagemap, template, flex, coupon]",
                        "property": "messages[0].type"}]
    assert spec.errors("messaging", "PushMessageRequest", push({"text": "no type"})) == [
        {"message": "must be specified", "property": "messages[0].type"}]


def test_no_detail_carries_a_python_repr_of_the_body():
    for kind, name, body in INVALID:
        for detail in spec.errors(kind, name, body):
            assert "'" not in detail["message"] or detail["message"].startswith("The property, "), detail
            assert " is not " not in detail["message"] and "required property" not in detail["message"], detail


@pytest.mark.parametrize(("kind", "name", "value"), NULLABLE)
def test_nullable_is_still_a_no_op(kind, name, value):
    same_as_jsonschema(kind, name, value)
    assert (spec.errors(kind, name, value) == []) is (value == "INTERNAL_ERROR")


def test_unhashable_discriminator_value_is_an_unknown_type():
    body = push({"type": ["text"], "text": "x"})
    assert spec._check("messaging", "PushMessageRequest")(body) is False
    assert {d["property"] for d in spec.errors("messaging", "PushMessageRequest", body)} == {"messages[0].type"}


def test_every_body_schema_compiles():
    for kind, name in [*BODY_SCHEMAS.values(), ("webhook", "CallbackRequest")]:
        assert spec._check(kind, name) is not None, (kind, name)


def test_a_keyword_the_compiler_does_not_know_sends_the_schema_to_jsonschema():
    compiler = spec._Compiler({"components": {"schemas": {"A": {"anyOf": [{"type": "string"}]}}}})
    with pytest.raises(spec._Unsupported):
        compiler.ref("#/components/schemas/A")
    compiler = spec._Compiler({"components": {"schemas": {"A": {"$ref": "other.yml#/components/schemas/A"}}}})
    with pytest.raises(spec._Unsupported):
        compiler.ref("#/components/schemas/A")


def test_every_named_schema_agrees_on_simple_probes():
    """Each components/schemas entry of the three documents, on small instances of every JSON type."""
    for kind in spec.SPEC_FILES:
        schemas = spec._document(kind)["components"]["schemas"]
        for name, schema in schemas.items():
            probes = [None, True, 0, 1, -1, 1.5, 2**40, "", "x", "https://example.com", [], ["x"], {}, {"type": "x"}]
            mapping = schema.get("discriminator", {}).get("mapping", {})
            probes += [{"type": key} for key in mapping]
            probes += [{key: "x" for key in schema.get("required", [])}]
            check = spec._check(kind, name)
            validator = spec.validator(kind, name)
            for probe in probes:
                assert check(probe) is validator.is_valid(probe), (kind, name, probe)


REPLACEMENTS = [None, True, False, 0, 7, -1, 1.5, 2**40, "", "x", "x" * 301, "https://example.com", [], ["x"], {},
                {"type": "text"}, {"type": "box"}, "bubble", "vertical", "postback", "flex", "image"]


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


def mutate(body, rng):
    body = copy.deepcopy(body)
    path = rng.choice([path for path in paths(body) if path])
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    operation = rng.random()
    if operation < 0.6:
        parent[last] = copy.deepcopy(rng.choice(REPLACEMENTS))
    elif operation < 0.75:
        del parent[last]
    elif operation < 0.85 and isinstance(parent[last], dict):
        parent[last][rng.choice(["bogus", "type", "text", "contents", "layout", "action"])] = rng.choice(REPLACEMENTS)
    elif isinstance(parent[last], list) and parent[last]:
        strings = all(isinstance(item, str) for item in parent[last])
        parent[last] = parent[last] * rng.choice([2, 6, 501] if strings else [2, 6])
    else:
        parent[last] = copy.deepcopy(rng.choice(REPLACEMENTS))
    return body


def test_random_mutations_of_valid_bodies_get_the_same_verdict():
    rng = random.Random(20240601)
    bases = [case for case in VALID if case[1] != "MulticastRequest"]
    bases.append(("messaging", "MulticastRequest", {"to": [USER, "U" + "1" * 32], "messages": [TEXT, FLEX]}))
    disagreements, verdicts = [], []
    for _ in range(500):
        kind, name, body = rng.choice(bases)
        mutated = mutate(body, rng)
        reference = spec._errors_reference(kind, name, mutated)
        verdicts.append(not reference)
        if spec.errors(kind, name, mutated) != reference or spec._check(kind, name)(mutated) is not (not reference):
            disagreements.append((name, mutated))
    assert disagreements == []
    assert verdicts.count(True) > 50 and verdicts.count(False) > 50  # both sides were exercised
