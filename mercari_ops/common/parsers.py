"""DRF parsers. Kept apart from common/api.py: DRF imports a parser class while it builds APIView, so this
module must not import rest_framework.views (nor, at import time, errors.py, which does)."""

from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """DRF's JSON parser through `json_loads_strict`: every API body is UTF-8, at most 64 levels deep, without
    NUL or lone surrogates (400 `{"error", "field"}` naming the path, via ValidationFailed), never a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        from .jsonsafe import json_loads_strict

        return json_loads_strict(stream.read() if stream is not None else b"", field="body")
