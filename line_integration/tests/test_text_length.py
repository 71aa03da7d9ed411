from line_integration.text_length import utf16_length, utf16_truncate


def test_utf16_length_counts_astral_characters_twice():
    assert utf16_length("") == 0
    assert utf16_length("ポイント") == 4  # BMP kanji and kana: one unit each
    assert utf16_length("\U0001F34E") == 2
    assert utf16_length("𠮷野家") == 4  # a kanji outside the BMP


def test_utf16_truncate_keeps_whole_characters():
    assert utf16_truncate("abc", 2) == "ab"
    assert utf16_truncate("a\U0001F34E", 2) == "a"  # never half a surrogate pair
    assert utf16_truncate("a\U0001F34E", 3) == "a\U0001F34E"
    assert utf16_truncate("x" * 5000) == "x" * 5000
    assert utf16_truncate("x" * 5001) == "x" * 5000
