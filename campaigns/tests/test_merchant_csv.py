"""The merchant master CSV check: every problem named by file line and column, nothing read past it."""

import pytest
from django.utils import translation

from campaigns.services.merchant_csv import FIELD_LIMIT, PROBLEMS_KEPT, merchant_csv_parse

HEADER = "merchant_id,payment_method,master_id,master_name,is_marketplace,category\n"


@pytest.fixture(autouse=True)
def _english():
    """The English messages (the import page shows them in the reader's language)."""
    with translation.override("en"):
        yield


def _problems(data) -> list[tuple[int, str | None]]:
    return [(p.line, p.column) for p in merchant_csv_parse(data).problems]


def test_a_valid_file_gives_its_rows_with_their_lines():
    parsed = merchant_csv_parse(HEADER + "m-1,,shop-1,Shop 1,Y,\n\nm-1,id,shop-1,,,\n")
    assert parsed.valid
    assert [(r.line, r.merchant_id, r.payment_method, r.name, r.is_marketplace) for r in parsed.rows] == [
        (2, "m-1", "", "Shop 1", True), (4, "m-1", "id", None, None)]


@pytest.mark.parametrize(("spelled", "flag"), [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), ("Y", True), ("y", True),
    ("0", False), ("false", False), ("No", False), ("n", False), ("N", False), (" ", None), ("", None)])
def test_is_marketplace_accepts_the_documented_spellings(spelled, flag):
    parsed = merchant_csv_parse(f"merchant_id,master_id,is_marketplace\nm-1,shop-1,{spelled}\n")
    assert parsed.valid and parsed.rows[0].is_marketplace is flag


@pytest.mark.parametrize("spelled", ["maybe", "2", "t", "oui", "-1"])
def test_is_marketplace_refuses_anything_else(spelled):
    assert _problems(f"merchant_id,master_id,is_marketplace\nm-1,shop-1,x\nm-2,shop-2,{spelled}\n") == [
        (2, "is_marketplace"), (3, "is_marketplace")]


def test_lengths_follow_the_models_max_length():
    data = (HEADER + f"{'m' * 64},{'p' * 32},{'s' * 64},{'n' * 200},1,{'c' * 64}\n"
            + f"{'m' * 65},{'p' * 33},{'s' * 65},{'n' * 201},1,{'c' * 65}\n")
    parsed = merchant_csv_parse(data)
    assert [(p.line, p.column) for p in parsed.problems] == [
        (3, "merchant_id"), (3, "payment_method"), (3, "master_id"), (3, "master_name"), (3, "category")]
    assert parsed.problems[3].message == "is 201 characters long; at most 200 allowed"
    assert len(parsed.rows) == 1


def test_nul_is_named_by_line_and_column():
    parsed = merchant_csv_parse(HEADER + "m-1,,shop-1,ok,,\nm-2,,shop-2,Sh\x00op,,\n")
    assert [str(p) for p in parsed.problems] == ["line 3, column master_name: contains a NUL character (U+0000)"]


def test_a_field_over_the_csv_limit_is_a_line_numbered_problem_and_the_rest_is_still_read():
    data = HEADER + "m-1,,shop-1,,,\n" + f"m-2,,shop-2,{'x' * 131_073},,\n" + "m-3,,shop-3,,,\n" + "m-4,,,,,\n"
    parsed = merchant_csv_parse(data)
    assert [(p.line, p.column) for p in parsed.problems] == [(3, None), (5, "master_id")]
    assert f"limited to {FIELD_LIMIT} characters" in parsed.problems[0].message


def test_invalid_utf8_names_each_bad_line():
    data = (HEADER + "m-1,,shop-1,,,\nm-2,,shop-\xff,,,\nm-3,,shop-3,,,\n").encode("latin-1")
    data += "m-4,,shop-4,\u30b7\u30e7\u30c3\u30d7,,\n".encode() + b"m-5,,shop-5,\xe3\x82,,\n"
    parsed = merchant_csv_parse(data)
    assert [(p.line, p.column) for p in parsed.problems] == [(3, None), (6, None)]
    assert parsed.problems[0].message == "not UTF-8 text (byte 0xff at position 11 of the line)"


def test_a_lone_surrogate_in_text_is_not_utf8():
    assert _problems(HEADER + "m-1,,shop-\ud800,,,\n") == [(2, None)]


def test_a_byte_order_mark_and_crlf_are_fine():
    parsed = merchant_csv_parse(b"\xef\xbb\xbf" + HEADER.replace("\n", "\r\n").encode() + b"m-1,,shop-1,,,\r\n")
    assert parsed.valid and parsed.rows[0].master_id == "shop-1"


def test_the_same_merchant_id_and_payment_method_twice_names_both_lines():
    parsed = merchant_csv_parse(HEADER + "m-1,,shop-a,,,\nm-1,id,shop-a,,,\nm-1,,shop-b,,,\n")
    assert [str(p) for p in parsed.problems] == [
        "line 4, column merchant_id: merchant_id 'm-1' with payment_method '' is on line 2 and line 4"]


def test_one_master_given_two_names_is_a_problem():
    assert _problems(HEADER + "m-1,,shop,Shop,,\nm-2,,shop,,,\nm-3,,shop,Other,,\nm-4,,shop,,0,\nm-5,,shop,,1,\n") == [
        (4, "master_name"), (6, "is_marketplace")]


def test_header_problems_and_field_counts():
    assert _problems("merchant_id,master,x\nm-1,a,b\n") == [(1, "master_id"), (1, "master"), (1, "x")]
    assert _problems("merchant_id,master_id,merchant_id\n") == [(1, "merchant_id")]
    assert _problems("") == [(1, None)]
    assert _problems("merchant_id,master_id\nm-1,shop-1,extra\nm-2\n,shop-3\n") == [
        (2, None), (3, None), (4, "merchant_id")]


def test_every_problem_is_counted_and_the_first_hundred_kept():
    parsed = merchant_csv_parse("merchant_id,master_id\n" + "m,\n" * 250)
    assert parsed.problem_count == 250 and len(parsed.problems) == PROBLEMS_KEPT
    assert parsed.problems[-1].line == PROBLEMS_KEPT + 1
