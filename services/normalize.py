"""One normalisation for writing and for searching.

Every searchable value is stored in a canonical form (see ``storage.models.SearchTerm``)
and every query is folded by the same functions, so that ``n123ap`` finds ``Н123АР`` and
``8 945 123-10-10`` finds ``+7 (945) 123-10-10``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import phonenumbers

# Searchable fields. The three boxes of the seed pick among them (settings).
SEARCH_FIELDS = ("name", "inn", "card", "phone", "email", "contact", "plate", "vin", "body")
CLIENT_FIELDS = frozenset({"name", "inn", "card", "phone", "email", "contact"})
CAR_FIELDS = frozenset({"plate", "vin", "body"})
CODE_FIELDS = frozenset({"plate", "vin", "body", "card", "inn"})

# The 12 letters allowed on Russian plates and their Latin look-alikes, plus the
# phonetic equivalents people type on a Latin keyboard (N, R, S, V, U).
_PLATE_FOLD = str.maketrans(
    {
        "A": "А",
        "B": "В",
        "E": "Е",
        "K": "К",
        "M": "М",
        "H": "Н",
        "O": "О",
        "P": "Р",
        "C": "С",
        "T": "Т",
        "Y": "У",
        "X": "Х",
        "N": "Н",
        "R": "Р",
        "S": "С",
        "V": "В",
        "U": "У",
        "Ё": "Е",
    }
)
# The reverse for VINs and frame numbers, which are Latin: a VIN typed on a Russian
# keyboard layout with look-alike letters still matches.
_CODE_FOLD = str.maketrans(
    {
        "А": "A",
        "В": "B",
        "Е": "E",
        "К": "K",
        "М": "M",
        "Н": "H",
        "О": "O",
        "Р": "P",
        "С": "C",
        "Т": "T",
        "У": "Y",
        "Х": "X",
    }
)
_NOT_ALNUM = re.compile(r"[^0-9A-ZА-ЯЁ]+")
_SPACES = re.compile(r"\s+")
_RUS_SUFFIX = re.compile(r"(RUS|РУС)$")
_DIGITS = re.compile(r"\d")


# Control and invisible formatting characters: never part of a value, never searched.
_INVISIBLE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]"
)


def _nfkc(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def normalize_name(text: str) -> str:
    """Names and free text: case-insensitive (Cyrillic too), ё = е, spaces collapsed."""
    folded = _nfkc(text).casefold().replace("ё", "е")
    return _SPACES.sub(" ", folded).strip()


def normalize_plate(text: str) -> str:
    """Plates: upper case, spaces/dashes dropped, Latin look-alikes folded to Cyrillic."""
    upper = _nfkc(text).upper()
    compact = _NOT_ALNUM.sub("", upper)
    compact = _RUS_SUFFIX.sub("", compact)
    return compact.translate(_PLATE_FOLD)


def normalize_code(text: str) -> str:
    """VINs, frame/body numbers, card numbers, INNs: upper case Latin, no separators."""
    upper = _nfkc(text).upper().replace("Ё", "Е")
    return _NOT_ALNUM.sub("", upper).translate(_CODE_FOLD)


def normalize_email(text: str) -> str:
    return _nfkc(text).strip().casefold()


def digits_of(text: str) -> str:
    return "".join(ch for ch in _nfkc(text) if ch.isdigit() and ch.isascii())


class InvalidPhone(ValueError):
    """A value that cannot be a phone number; the message says why."""


def parse_phone(text: str, region: str = "RU") -> str:
    """A full phone number as E.164 digits without ``+`` (``79451231010``).

    Accepts what people write: ``8 945 123-10-10``, ``+7 (945) 1231010``, ``89451231010``,
    ``9451231010``. Raises :class:`InvalidPhone` with the reason otherwise.
    """
    raw = _nfkc(text).strip()
    if not raw:
        raise InvalidPhone("empty")
    if not _DIGITS.search(raw):
        raise InvalidPhone("no digits")
    if sum(ch.isdigit() or ch.isalpha() for ch in raw) < _shortest_number(raw, region):
        # Answered before phonenumbers parses it: a search for a few digits of a phone
        # asks this of every fragment, and parsing one was 140 thousand instructions.
        raise InvalidPhone("wrong number of digits")
    return _parse_valid(raw, region)


# The fewest digits of a valid number with its country code, in any country
# (phonenumbers' metadata: Austria's, Germany's and Iran's shortest have six).
# tests/test_normalize.py checks it against every region's metadata.
SHORTEST_INTERNATIONAL = 6


@functools.cache
def _shortest_national(region: str) -> int:
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    desc = meta.general_desc if meta is not None else None
    if desc is None:
        return 1
    lengths = [n for n in (*desc.possible_length, *desc.possible_length_local_only) if n > 0]
    return min(lengths, default=1)


def _shortest_number(raw: str, region: str) -> int:
    """The fewest symbols (digits, or letters read as digits: 1-800-FLOWERS) a valid
    number written as ``raw`` can have: with ``+``, a country code and its number; else
    a number of ``region``, or one dialled abroad through its international prefix (a
    digit at least before the country code)."""
    if raw.startswith("+"):
        return SHORTEST_INTERNATIONAL
    return min(_shortest_national(region), SHORTEST_INTERNATIONAL + 1)


def _parse_valid(raw: str, region: str) -> str:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(str(exc.args[0]) if exc.args else "not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhone("wrong number of digits")
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def try_parse_phone(text: str, region: str = "RU") -> str | None:
    try:
        return parse_phone(text, region)
    except InvalidPhone:
        return None


def format_phone(e164_digits: str) -> str:
    """``79451231010`` -> ``+7 (945) 123-10-10``; other countries in international form."""
    if (
        len(e164_digits) == 11
        and e164_digits[0] == "7"
        and e164_digits[1] != "0"
        and e164_digits.isascii()
        and e164_digits.isdigit()
    ):
        # Russia and Kazakhstan, most numbers by far: what parsing gives, without parsing
        # (a search screen formats a phone per button; parsing was a visible share of it).
        return _format_russian(e164_digits[1:])
    return _format_parsed(e164_digits)


def _format_russian(national: str) -> str:
    n = national
    return f"+7 ({n[:3]}) {n[3:6]}-{n[6:8]}-{n[8:]}"


def _format_parsed(e164_digits: str) -> str:
    try:
        number = phonenumbers.parse("+" + e164_digits, None)
    except phonenumbers.NumberParseException:
        return e164_digits
    if number.country_code == 7 and len(str(number.national_number)) == 10:
        return _format_russian(str(number.national_number))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def phone_fragments(text: str, region: str = "RU") -> list[str]:
    """What a phone-like query may mean, as digit strings to find inside E.164 digits.

    A full number (of ``region`` when written without ``+``) gives its E.164 form; a
    fragment gives its digits and, where it starts with the region's trunk prefix, the
    same with the country code instead (``8 945 12`` -> ``794512`` in Russia, ``030 12``
    -> ``493012`` in Germany).
    """
    digits = digits_of(text)
    if not digits:
        return []
    full = try_parse_phone(text, region)
    if full is not None:
        return [full]
    variants = [digits]
    trunk, country_code = _trunk_prefix(region)
    if trunk and digits.startswith(trunk) and len(digits) >= 4:
        variants.append(country_code + digits[len(trunk) :])
    return list(dict.fromkeys(variants))


@functools.cache
def _trunk_prefix(region: str) -> tuple[str, str]:
    """The region's trunk prefix (``8`` in Russia, ``0`` in Germany; ``""`` where there is
    none) and its country code, from phonenumbers' metadata."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None:
        return "", ""
    return meta.national_prefix or "", str(meta.country_code)


def looks_like_phone(text: str) -> bool:
    """Mostly digits and phone punctuation: worth searching among phones."""
    stripped = _nfkc(text).strip()
    if not stripped:
        return False
    return bool(re.fullmatch(r"[+\d\s()\-.]+", stripped)) and len(digits_of(stripped)) >= 3


@dataclass(frozen=True, slots=True)
class Term:
    """One searchable value of a client or a car, in canonical form."""

    field: str
    term: str


def client_terms(
    name: str | None,
    inn: str | None = None,
    cards: tuple[str, ...] | list[str] = (),
    contacts: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
) -> list[Term]:
    """The search terms of a client. ``contacts`` are ``(kind, value)`` pairs as stored
    (phones already as E.164 digits)."""
    terms: list[Term] = []
    if name and (n := normalize_name(name)):
        terms.append(Term("name", n))
    if inn and (i := normalize_code(inn)):
        terms.append(Term("inn", i))
    for card in cards:
        if c := normalize_code(card):
            terms.append(Term("card", c))
    for kind, value in contacts:
        if kind in ("mobile", "phone"):
            if d := digits_of(value):
                terms.append(Term("phone", d))
        elif kind == "email":
            if e := normalize_email(value):
                terms.append(Term("email", e))
        elif v := normalize_name(value):
            terms.append(Term("contact", v))
    return _unique(terms)


def car_terms(plate: str | None, vin: str | None, body_number: str | None) -> list[Term]:
    terms: list[Term] = []
    if plate and (p := normalize_plate(plate)):
        terms.append(Term("plate", p))
    if vin and (v := normalize_code(vin)):
        terms.append(Term("vin", v))
    if body_number and (b := normalize_code(body_number)):
        terms.append(Term("body", b))
    return _unique(terms)


def _unique(terms: list[Term]) -> list[Term]:
    return list(dict.fromkeys(terms))


def query_probes(
    text: str, fields: tuple[str, ...] | frozenset[str], region: str = "RU"
) -> list[Term]:
    """How one typed query is looked for in each field: the query folded the way that
    field's values are folded (a phone as a number of ``region``, the shop's own, when
    written without ``+``). Fields the query cannot match are left out."""
    probes: list[Term] = []
    has_digit = bool(_DIGITS.search(text))
    has_letter = any(ch.isalpha() for ch in text)
    for field in fields:
        # Plates, VINs, body, card and tax numbers all carry digits, and names carry
        # letters: a text without them cannot match there, so it is not looked up.
        if field in CODE_FIELDS and not has_digit:
            continue
        if field == "name" and not has_letter:
            continue
        if field in ("name", "contact"):
            value = normalize_name(text)
        elif field == "email":
            value = normalize_email(text)
        elif field == "plate":
            value = normalize_plate(text)
        elif field in ("vin", "body", "card", "inn"):
            value = normalize_code(text)
        elif field == "phone":
            if not looks_like_phone(text):
                continue
            probes.extend(Term("phone", d) for d in phone_fragments(text, region) if len(d) >= 4)
            continue
        else:  # pragma: no cover - settings validate field names
            raise ValueError(f"unknown search field {field!r}")
        if value:
            probes.append(Term(field, value))
    return _unique(probes)


VIN_RE = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")


def is_vin(text: str) -> bool:
    """A 17-character VIN. The check digit is not enforced: it binds only in North America."""
    return bool(VIN_RE.match(normalize_code(text)))
