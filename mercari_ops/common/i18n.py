"""Translations: compile the shipped .po catalogs with polib (no gettext tools needed to run or test), and pick
the language of a request.

`python -m mercari_ops.common.i18n` compiles every `locale/<lang>/LC_MESSAGES/*.po` of the project whose .mo is
missing or older (the Makefile runs it before `make run` and `make test`; production images run it at build).
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.conf import settings
from django.middleware.locale import LocaleMiddleware
from django.utils import translation

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", "var", "node_modules", ".git"}


def catalogs(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in root.rglob("locale/*/LC_MESSAGES/*.po") if not SKIP & set(p.relative_to(root).parts))


def catalogs_compile(root: Path = ROOT) -> list[Path]:
    import polib

    written = []
    for po_path in catalogs(root):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        polib.pofile(str(po_path)).save_as_mofile(str(mo_path))
        written.append(mo_path)
    return written


MACHINE_LANGUAGE = "en"


class OpsLocaleMiddleware(LocaleMiddleware):
    """Django's LocaleMiddleware for pages (Accept-Language, the language cookie, else LANGUAGE_CODE: Japanese);
    machine paths always speak English, as their contracts do (production routes them past this middleware:
    mercari_ops/wsgi.py activates English there)."""

    def process_request(self, request):
        if request.path_info.startswith(tuple(settings.MACHINE_PATH_PREFIXES)):
            translation.activate(MACHINE_LANGUAGE)
            request.LANGUAGE_CODE = MACHINE_LANGUAGE
            return
        super().process_request(request)

    def process_response(self, request, response):
        if request.path_info.startswith(tuple(settings.MACHINE_PATH_PREFIXES)):
            return response
        return super().process_response(request, response)


if __name__ == "__main__":
    for path in catalogs_compile():
        print(f"compiled {path.relative_to(ROOT)}", file=sys.stderr)
