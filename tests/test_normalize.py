"""The one normalisation shared by writing and searching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services import normalize
from services.normalize import (
    InvalidPhone,
    client_terms,
    format_phone,
    is_vin,
    normalize_code,
    normalize_name,
    normalize_plate,
    parse_phone,
    phone_fragments,
    query_probes,
)

PLATE_LETTERS = "АВЕКМНОРСТУХ"
LATIN_TWINS = "ABEKMHOPCTYX"


@pytest.mark.parametrize(
    "written", ["8 945 123-10-10", "+7 (945) 1231010", "89451231010", "9451231010", "+79451231010"]
)
def test_phones_people_write_are_one_number(written):
    assert parse_phone(written) == "79451231010"


@pytest.mark.parametrize("bad", ["", "abc", "12-34", "+7 945", "8 000 000 00 00 00"])
def test_bad_phone_says_why(bad):
    with pytest.raises(InvalidPhone) as err:
        parse_phone(bad)
    assert str(err.value)


def test_phone_display():
    assert format_phone("79451231010") == "+7 (945) 123-10-10"
    assert format_phone("4930123456").startswith("+49")


@given(st.from_regex(r"7\d{10}", fullmatch=True))
def test_phone_display_shortcut_agrees_with_phonenumbers(digits: str):
    # Numbers of +7 are formatted without parsing: the same text as the parsed way.
    assert format_phone(digits) == normalize._format_parsed(digits)


def test_no_country_has_numbers_shorter_than_the_guard_says():
    import phonenumbers

    shortest = min(
        len(str(phonenumbers.country_code_for_region(region))) + min(lengths)
        for region in phonenumbers.SUPPORTED_REGIONS
        if (meta := phonenumbers.PhoneMetadata.metadata_for_region(region)) is not None
        and (lengths := [n for n in meta.general_desc.possible_length if n > 0])
    )
    assert normalize.SHORTEST_INTERNATIONAL == shortest


@given(
    st.text(alphabet="0123456789+()- 8ABCXYZабв٠١٢", max_size=12),
    st.sampled_from(["RU", "US", "NU", "DE", "AT", "KZ"]),
)
def test_what_the_guard_refuses_phonenumbers_refuses_too(text: str, region: str):
    # The length guard only answers sooner: phonenumbers itself finds no valid number.
    raw = normalize._nfkc(text).strip()
    if sum(ch.isdigit() or ch.isalpha() for ch in raw) >= normalize._shortest_number(raw, region):
        return
    with pytest.raises(InvalidPhone):
        normalize._parse_valid(raw, region)
    with pytest.raises(InvalidPhone):
        parse_phone(text, region)


def test_a_search_fragment_is_not_parsed_as_a_number():
    assert normalize._shortest_number("912345", "RU") == 7
    assert normalize._shortest_number("+49301", "RU") == 6
    assert normalize._shortest_number("4002", "NU") == 4  # Niue's own numbers have four


def test_fragment_with_trunk_prefix_also_tries_country_code():
    assert phone_fragments("8945123") == ["8945123", "7945123"]
    assert phone_fragments("1231010") == ["1231010"]


@pytest.mark.parametrize(
    ("typed", "region", "fragments"),
    [
        ("8 701 55", "KZ", ["870155", "770155"]),  # Kazakhstan: trunk 8, code 7, as Russia
        ("030 12", "DE", ["03012", "493012"]),  # Germany: trunk 0, code 49
        ("030 12", "RU", ["03012"]),  # in Russia 0 is no trunk prefix
        ("030 12345678", "DE", ["493012345678"]),  # a whole German number
        ("1 212 55", "US", ["121255"]),  # trunk 1 and code 1: one fragment, not two
        ("555-0199", "US", ["5550199"]),
    ],
)
def test_fragments_follow_the_shops_region(typed, region, fragments):
    assert phone_fragments(typed, region) == fragments


def test_query_probes_read_phones_in_the_shops_region():
    assert {p.term for p in query_probes("030 1234 5678", ("phone",), "DE")} == {"493012345678"}
    assert {p.term for p in query_probes("030 1234 5678", ("phone",))} == {"03012345678"}


@pytest.mark.parametrize("typed", ["n123ap", "Н123АР", "н 123 ар", "h123ap", "N-123-AP", "н123ар"])
def test_plate_alphabets_fold_together(typed):
    assert normalize_plate(typed) == "Н123АР"


def test_plate_region_and_rus_suffix():
    assert normalize_plate("а 123 вс 77 RUS") == "А123ВС77"
    assert normalize_plate("a123bc777") == "А123ВС777"


def test_phonetic_latin_letters():
    # N, R, S, V, U as people type them on a Latin keyboard
    assert normalize_plate("nrsvu") == "НРСВУ"


@given(st.text(alphabet=PLATE_LETTERS + LATIN_TWINS + "0123456789 -", max_size=12))
def test_plate_fold_is_idempotent_and_latin_free(text):
    once = normalize_plate(text)
    assert normalize_plate(once) == once
    assert not set(once) & set(LATIN_TWINS)


@given(st.text(max_size=40))
def test_normalisers_never_raise(text):
    normalize_name(text)
    normalize_plate(text)
    normalize_code(text)
    query_probes(text, ("name", "phone", "email", "plate", "vin", "body", "card", "inn"))


def test_names_fold_case_and_yo():
    assert normalize_name("  Семёнов   ПЁТР ") == "семенов петр"


def test_vin_and_body_numbers():
    assert normalize_code("nmtbm28e80r058037") == "NMTBM28E80R058037"
    assert normalize_code("NZE121 - 0123456") == "NZE1210123456"
    # Cyrillic look-alikes typed on a Russian layout
    assert normalize_code("НМТВМ") == "HMTBM"
    # a VIN whose check digit fails is still a VIN (it binds only in North America)
    assert is_vin("NMTBM28E80R058037")
    assert is_vin("1HGCM82633A004352") and is_vin("1HGCM82633A004353")
    assert not is_vin("NMTBM28E80R05803O")  # O is never in a VIN


def test_client_terms_fold_every_field():
    terms = client_terms(
        "Иванов Иван",
        inn="7712334545",
        cards=["dc-0001"],
        contacts=[("mobile", "79451231010"), ("email", "Ivanov@Mail.ru"), ("address", "Тверская")],
    )
    assert {(t.field, t.term) for t in terms} == {
        ("name", "иванов иван"),
        ("inn", "7712334545"),
        ("card", "DC0001"),
        ("phone", "79451231010"),
        ("email", "ivanov@mail.ru"),
        ("contact", "тверская"),
    }


def test_phone_probe_only_for_phone_like_text():
    assert [p.field for p in query_probes("ivanov", ("phone",))] == []
    assert {p.term for p in query_probes("8 945 123-10-10", ("phone",))} == {"79451231010"}
    assert query_probes("123", ("phone",)) == []  # fewer than 4 digits: not searched as phone
