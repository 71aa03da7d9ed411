"""LINE counts the length of a message's text in UTF-16 code units (developers.line.biz, "Character counting
in a text"): an emoji outside the Basic Multilingual Plane, such as 🍎, is two characters, not one."""

TEXT_MAX = 5000


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def utf16_truncate(text: str, limit: int = TEXT_MAX) -> str:
    """The longest prefix of `text` that LINE counts as at most `limit` characters; never half a surrogate pair."""
    if len(text) * 2 <= limit:  # at most two units per code point: surely short enough, without encoding
        return text
    units = text.encode("utf-16-le")[: limit * 2]
    return units.decode("utf-16-le", errors="ignore")
