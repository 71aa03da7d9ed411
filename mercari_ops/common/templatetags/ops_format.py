"""Template filters for money and points: `{% load ops_format %}` then `{{ amount|yen }}`, `{{ p|points }}`,
`{{ n|num }}`, `{{ part|percent_of:whole }}`. The formatting itself lives in mercari_ops.common.formatting."""

from django import template

from mercari_ops.common import formatting

register = template.Library()


@register.filter(name="yen")
def yen(value) -> str:
    return formatting.yen(value)


@register.filter(name="points")
def points(value) -> str:
    return formatting.points(value)


@register.filter(name="num")
def num(value) -> str:
    return formatting.number(value)


@register.filter(name="percent_of")
def percent_of(value, whole) -> str:
    return formatting.percent(value, whole)
