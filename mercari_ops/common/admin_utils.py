import json

from django.utils.html import format_html


def pretty_json(value) -> str:
    """Read-only JSON block for admin detail pages."""
    if value is None:
        return "\u2014"
    return format_html('<pre style="white-space:pre-wrap;max-width:60em">{}</pre>',
                       json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))
