"""Money and points read the same on every page: ¥12,345 and 12,345 pt."""

from decimal import Decimal

from django.template import Context, Template

from mercari_ops.common.formatting import number, percent, points, yen


def test_yen_has_the_sign_and_thousands_separators():
    assert yen(392423) == "¥392,423"
    assert yen(0) == "¥0"
    assert yen(-1500) == "-¥1,500"
    assert yen(Decimal("1234.5")) == "¥1,235"  # no sen on screen: half up


def test_points_have_separators_and_the_unit():
    assert points(12345) == "12,345 pt"
    assert points(1) == "1 pt"
    assert points("2500") == "2,500 pt"


def test_missing_values_are_a_dash_not_zero_and_text_is_kept():
    assert yen(None) == "—" and points(None) == "—" and number("") == "—"
    assert number("n/a") == "n/a"
    assert number(True) == "True"  # a boolean is not a count


def test_percent():
    assert percent(1661, 4575) == "36.3%"
    assert percent(5, 0) == "—"


def test_template_filters():
    html = Template("{% load ops_format %}{{ a|yen }} | {{ p|points }} | {{ n|num }} | {{ n|percent_of:d }}").render(
        Context({"a": 392423, "p": 1700, "n": 4575, "d": 9150}))
    assert html == "¥392,423 | 1,700 pt | 4,575 | 50.0%"
