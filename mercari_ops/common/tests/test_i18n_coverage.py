"""Every name a person reads in the admin is translatable, and the Japanese catalogs leave nothing untranslated.

A new model, field or message in English only fails here, not in front of a marketer.
"""

import polib
import pytest
from django.apps import apps
from django.utils import translation
from django.utils.functional import Promise

from mercari_ops.common.i18n import catalogs

PROJECT_APPS = ("common", "inbox", "loyalty", "campaigns", "line_integration", "history")
# Names that read the same in Japanese (identifiers and brand names).
SAME_IN_JAPANESE = {"ID", "LINE", "JSON", "URL", "API", "Braze", "TOTP"}


def _names():
    for label in PROJECT_APPS:
        config = apps.get_app_config(label)
        yield f"app {label}", config.verbose_name
        for model in config.get_models():
            yield f"{model._meta.label}", model._meta.verbose_name
            yield f"{model._meta.label} (plural)", model._meta.verbose_name_plural
            for field in model._meta.get_fields():
                if field.concrete and not field.auto_created:
                    yield f"{model._meta.label}.{field.name}", field.verbose_name


def test_every_model_and_field_name_is_translated_to_japanese():
    untranslated = []
    for where, name in _names():
        with translation.override("en"):
            english = str(name)
        with translation.override("ja"):
            japanese = str(name)
        if english in SAME_IN_JAPANESE:
            continue
        if not isinstance(name, Promise) or japanese == english:
            untranslated.append(f"{where}: {english!r}")
    assert not untranslated, f"{len(untranslated)} names not in Japanese:\n" + "\n".join(untranslated)


@pytest.mark.parametrize("path", [p for p in catalogs() if p.parts[-3] == "ja"], ids=str)
def test_the_japanese_catalog_leaves_nothing_untranslated(path):
    po = polib.pofile(str(path))
    assert po.untranslated_entries() == [] and po.fuzzy_entries() == [], (
        [e.msgid for e in po.untranslated_entries() + po.fuzzy_entries()][:50])
