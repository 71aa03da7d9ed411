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
SESSION_KEY = "ops_language"  # the signed-in user's own choice, copied from UserPreference at login


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


class UserLanguageMiddleware:
    """After authentication: the language a signed-in user chose (UserPreference, kept in their session) wins over
    the browser's; anonymous pages keep OpsLocaleMiddleware's choice."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        chosen = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
        if chosen and chosen != request.LANGUAGE_CODE and translation.check_for_language(chosen):
            translation.activate(chosen)
            request.LANGUAGE_CODE = chosen
        return self.get_response(request)


def user_language_restore(sender, request, user, **kwargs) -> None:
    """user_logged_in: the user's saved language into the new session."""
    from .models import UserPreference

    language = UserPreference.objects.filter(user=user).values_list("language", flat=True).first()
    if language:
        request.session[SESSION_KEY] = language


def language_set(request):
    """Django's set_language (cookie, redirect), and for a signed-in user their preference and session too."""
    from django.views.i18n import set_language

    from .models import UserPreference

    response = set_language(request)
    language = request.POST.get("language", "")
    if request.method == "POST" and translation.check_for_language(language) and request.user.is_authenticated:
        UserPreference.objects.update_or_create(user=request.user, defaults={"language": language})
        request.session[SESSION_KEY] = language
    return response


if __name__ == "__main__":
    for path in catalogs_compile():
        print(f"compiled {path.relative_to(ROOT)}", file=sys.stderr)
