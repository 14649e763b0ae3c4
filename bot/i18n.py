"""Texts in the user's language: gettext catalogues under ``locales/``, aiogram's I18n.

The ``.po`` files are the source (in git); the ``.mo`` files are build output (gitignored)
and are compiled here, at start-up, when missing or older than their ``.po`` — so a fresh
clone with an editable install just runs. Fuzzy entries are left out of the ``.mo`` (the
text falls back to the English msgid); ``tests/test_i18n.py`` refuses them anyway.

The language of an update: the staff member's saved choice (``/lang``), else Telegram's
``language_code`` when we speak it, else ``DEFAULT_LOCALE``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

# The checkout's catalogues (the source, for tests and tools); an installed copy (the
# Docker image) says where its are with CCBOT_LOCALES_DIR.
LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
LOCALES_ENV = "CCBOT_LOCALES_DIR"


def locales_dir() -> Path:
    """``CCBOT_LOCALES_DIR`` when set (an installed package has no ``locales/`` beside it),
    else the checkout's ``locales/``."""
    configured = os.environ.get(LOCALES_ENV)
    return Path(configured) if configured else LOCALES_DIR


DOMAIN = "messages"
LANGUAGES = ("ru", "en")


class CatalogueError(RuntimeError):
    pass


def compile_catalogues(path: Path | None = None, domain: str = DOMAIN) -> list[Path]:
    """Compile every ``<lang>/LC_MESSAGES/<domain>.po`` whose ``.mo`` is missing or older.

    Returns the ``.mo`` files written. The write is atomic (a temporary file renamed into
    place), so two processes starting at once cannot read half a catalogue.
    """
    path = path or locales_dir()
    written: list[Path] = []
    for po_path in sorted(path.glob(f"*/LC_MESSAGES/{domain}.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime_ns >= po_path.stat().st_mtime_ns:
            continue
        locale = po_path.parent.parent.name
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=locale, domain=domain, abort_invalid=True)
        try:
            fd, tmp_name = tempfile.mkstemp(dir=mo_path.parent, suffix=".mo.tmp")
            with os.fdopen(fd, "wb") as tmp:
                write_mo(tmp, catalog, use_fuzzy=False)
            os.replace(tmp_name, mo_path)
        except OSError as exc:
            if mo_path.exists():
                continue  # read-only install with a compiled catalogue: use what is there
            raise CatalogueError(
                f"cannot compile {po_path} (run from a writable checkout): {exc}"
            ) from exc
        written.append(mo_path)
    return written


def make_i18n(default_locale: str, path: Path | None = None) -> I18n:
    path = path or locales_dir()
    compile_catalogues(path)
    i18n = I18n(path=path, default_locale=default_locale, domain=DOMAIN)
    missing = set(LANGUAGES) - set(i18n.available_locales)
    if missing:
        raise CatalogueError(f"no catalogue for {sorted(missing)} under {path}")
    return i18n


def pick_locale(
    saved: str | None,
    telegram_code: str | None,
    available: Iterable[str],
    default: str,
) -> str:
    """The staff member's saved locale, else Telegram's language (``en-GB`` -> ``en``) when
    available, else ``default``."""
    available = set(available)
    if saved in available:
        return str(saved)
    if telegram_code:
        language = telegram_code.replace("_", "-").split("-", 1)[0].lower()
        if language in available:
            return language
    return default


class StaffI18nMiddleware(I18nMiddleware):
    """Chooses the locale from ``staff`` (put in the data by ``StaffMiddleware``) and the
    Telegram user; registered on every event observer, errors included, with ``setup``."""

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        staff = data.get("staff")
        user: User | None = data.get("event_from_user")
        return pick_locale(
            getattr(staff, "locale", None),
            user.language_code if user is not None else None,
            self.i18n.available_locales,
            self.i18n.default_locale,
        )
