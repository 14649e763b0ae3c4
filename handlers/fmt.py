"""Money, dates, phones and quantities the way the user's language writes them.

Every value that came from the database goes through :func:`q` (HTML-escaped) before it
is put in a message: a client named ``<b>Tom & "Jerry"</b>`` shows literally.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from decimal import Decimal
from html import unescape
from zoneinfo import ZoneInfo

from aiogram import html
from aiogram.utils.i18n import get_i18n
from babel.core import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal

from services.normalize import format_phone

TELEGRAM_LIMIT = 4096
# Room for the page footer and HTML: a page of text is cut well below Telegram's limit.
PAGE_CHARS = 3500


def locale() -> str:
    try:
        return get_i18n().current_locale
    except LookupError:
        return "ru"


@functools.cache
def _babel(code: str) -> Locale:
    # Parsed once per language: Babel parses a locale given by name on every call.
    return Locale.parse(code)


def q(value: object) -> str:
    """A database value, escaped for HTML parse mode; None shows as a dash."""
    if value is None or value == "":
        return "—"
    return html.quote(str(value))


def money(kopecks: int) -> str:
    """``150000`` -> ``1 500,00 ₽`` (ru) / ``1,500.00 ₽`` (en)."""
    amount = format_decimal(Decimal(kopecks) / 100, format="#,##0.00", locale=_babel(locale()))
    return amount + "\u00a0₽"


def qty(milli: int) -> str:
    """Thousandths -> ``1,000`` (ru) / ``1.000``, three decimals like the seed."""
    return format_decimal(Decimal(milli) / 1000, format="#,##0.000", locale=_babel(locale()))


def percent(bp: int) -> str:
    return format_decimal(Decimal(bp) / 100, format="#,##0.##", locale=_babel(locale())) + " %"


def when(moment: datetime | None, tz: ZoneInfo) -> str:
    """A UTC time in the shop's time zone: ``20.10.2020 10:59``."""
    if moment is None:
        return "—"
    pattern = "dd.MM.yyyy HH:mm" if locale() == "ru" else "d MMM yyyy, HH:mm"
    return format_datetime(moment.astimezone(tz), pattern, locale=_babel(locale()))


def day(moment: datetime | None, tz: ZoneInfo) -> str:
    if moment is None:
        return "—"
    pattern = "dd.MM.yyyy" if locale() == "ru" else "d MMM yyyy"
    return format_datetime(moment.astimezone(tz), pattern, locale=_babel(locale()))


def phone(e164: str | None) -> str:
    return q(format_phone(e164)) if e164 else "—"


def cut(text: str, limit: int) -> str:
    """At most ``limit`` characters, an ellipsis marking the cut (before escaping)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def paginate(header: str, blocks: list[str], limit: int = PAGE_CHARS) -> list[str]:
    """Splits ``blocks`` (whole records) into pages of at most ``limit`` characters with
    the header on each; a record is never cut, however long (it is then alone)."""
    pages: list[str] = []
    current: list[str] = []
    size = len(header)
    for block in blocks:
        if current and size + len(block) + 1 > limit:
            pages.append("\n".join([header, *current]))
            current, size = [], len(header)
        current.append(block)
        size += len(block) + 1
    pages.append("\n".join([header, *current]))
    return pages


def plain(text: str) -> str:
    """A text for a toast or an alert (no HTML there): tags dropped, entities undone."""
    return unescape(re.sub(r"<[^>]+>", "", text))
