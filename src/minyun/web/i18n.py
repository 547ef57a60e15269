"""Translations for the pages: gettext catalogs read from .po files, no compile step.

Messages are written in English in templates and code; Simplified Chinese is the default
display language. Each catalog is read once per process with Babel and turned into
gettext `Translations` in memory.
"""

from __future__ import annotations

from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"


# The locales a visitor can pick: short name -> (catalog folder, <html lang>).
LOCALES: dict[str, tuple[str, str]] = {
    "zh": ("zh_Hans", "zh-Hans"),
    "en": ("en", "en"),
}
DEFAULT_LOCALE = "zh"


def N_(message: str) -> str:
    """Mark a message for extraction; it is translated where it is shown."""
    return message


def normalize(locale: str | None) -> str:
    """The supported short locale nearest to `locale` (zh_Hans_CN -> zh, en_GB -> en)."""
    if not locale:
        return DEFAULT_LOCALE
    short = locale.replace("-", "_").split("_")[0].lower()
    return short if short in LOCALES else DEFAULT_LOCALE


def catalog_path(locale: str) -> Path:
    """Where the .po file of a short locale lives."""
    folder, _lang = LOCALES[locale]
    return LOCALE_DIR / folder / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=len(LOCALES))
def translations(locale: str) -> Translations:
    """The gettext translations of a short locale, built from its .po file once per process."""
    folder, _lang = LOCALES[locale]
    with catalog_path(locale).open("rb") as po:
        catalog = read_po(po, locale=folder, domain=DOMAIN)
    buffer = BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


def html_lang(locale: str) -> str:
    """The BCP 47 tag for `<html lang>`."""
    return LOCALES[locale][1]
