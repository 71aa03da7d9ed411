"""Fill translations into a catalog from a JSON object {msgid: msgstr} (a translator's tool; needs no gettext)."""

import json

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "po_fill <catalog.po> <translations.json>: set msgstr for the msgids given; report the ones still empty."

    def add_arguments(self, parser):
        parser.add_argument("catalog")
        parser.add_argument("translations")

    def handle(self, *args, catalog, translations, **options):
        import polib

        po = polib.pofile(catalog)
        given = json.loads(open(translations, encoding="utf-8").read())
        for entry in po:
            if entry.msgid in given:
                value = given[entry.msgid]
                if entry.msgid_plural:
                    entry.msgstr_plural = {0: value}
                else:
                    entry.msgstr = value
                if "fuzzy" in entry.flags:
                    entry.flags.remove("fuzzy")
        po.save()
        missing = [e.msgid for e in po if not (e.msgstr or any(e.msgstr_plural.values())) and not e.obsolete]
        self.stdout.write(f"{len(po) - len(missing)} translated, {len(missing)} missing")
        for msgid in missing:
            self.stdout.write(f"  missing: {msgid!r}")
