"""The search service against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text

from services.normalize import parse_phone
from services.search import Box, Problem, SearchService, Tier
from storage import search_repo
from storage.db import make_engine, make_session_factory
from storage.models import (
    Car,
    Client,
    ClientCar,
    ClientKind,
    ContactInfo,
    ContactKind,
    DiscountCard,
    SearchTerm,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


async def add_client(session, name, *, phone=None, email=None, card=None, inn=None, days_ago=0):
    client = Client(
        name=name,
        kind=ClientKind.PERSON,
        inn=inn,
        main_phone=parse_phone(phone) if phone else None,
        last_activity_at=NOW - timedelta(days=days_ago),
    )
    if phone:
        client.contacts.append(ContactInfo(kind=ContactKind.MOBILE, value=parse_phone(phone)))
    if email:
        client.contacts.append(ContactInfo(kind=ContactKind.EMAIL, value=email))
    session.add(client)
    await session.flush()
    if card:
        session.add(DiscountCard(number=card, client_id=client.id, discount_bp=500))
        await session.flush()
    return client


async def add_car(session, client, *, plate=None, vin=None, body_number=None, name="TOYOTA"):
    car = Car(name=name, plate=plate, vin=vin, body_number=body_number, last_activity_at=NOW)
    session.add(car)
    await session.flush()
    session.add(ClientCar(client_id=client.id, car_id=car.id))
    await session.flush()
    return car


@pytest.fixture
async def shop(session):
    ivanov = await add_client(
        session, "Иванов Иван", phone="+7 (945) 1231010", email="ivanov@mail.ru", card="DC-7788"
    )
    corolla = await add_car(
        session,
        ivanov,
        plate="Н123АР77",
        vin="NMTBM28E80R058037",
        name="TOYOTA, COROLLA седан (_E12J_,_E12T_)",
    )
    zubkov = await add_client(
        session, "Зубков Алексей", phone="+7 (908) 4944434", inn="7712334545"
    )
    camry = await add_car(session, zubkov, plate="А777ВС799", body_number="NZE121-0123456")
    semenov = await add_client(session, "Семёнов Пётр", phone="8 916 854-56-78")
    stroganov = await add_client(session, 'ИЧП "Строганов НИ"', phone="+7 (916) 8545678")
    await session.commit()
    return {
        "ivanov": ivanov,
        "corolla": corolla,
        "zubkov": zubkov,
        "camry": camry,
        "semenov": semenov,
        "stroganov": stroganov,
    }


@pytest.fixture
def service():
    return SearchService()


def client_ids(result):
    return [c.id for c in result.clients]


def car_ids(result):
    return [c.id for c in result.cars]


@pytest.mark.parametrize(
    "typed",
    [
        "8 945 123-10-10",
        "+7 (945) 1231010",
        "89451231010",
        "9451231010",
        "1231010",
        "4512",
        "8945123",
    ],
)
async def test_phone_as_people_write_it(session, shop, service, typed):
    result = await service.search(session, typed)
    assert client_ids(result) == [shop["ivanov"].id]


async def test_phones_typed_as_the_shops_region_writes_them(session):
    """A shop outside Russia (settings' ``default_region``) finds its clients by numbers
    written its own way: whole, or a fragment after its trunk prefix."""
    berlin = await add_client(session, "Müller Hans", phone="+49 30 12345678")
    await session.commit()
    german = SearchService(region="DE")
    for typed in ("030 1234 5678", "030 12345678", "030 12", "+49 30 1234 5678", "1234 56"):
        assert client_ids(await german.search(session, typed)) == [berlin.id], typed
    assert client_ids(await SearchService().search(session, "030 12")) == []


@pytest.mark.parametrize("typed", ["n123ap", "Н123АР", "н 123 ар 77", "h123", "123ap", "N123AP77"])
async def test_plate_in_either_alphabet(session, shop, service, typed):
    result = await service.search(session, typed)
    assert car_ids(result) == [shop["corolla"].id]


@pytest.mark.parametrize("typed", ["8037", "058037", "R058037", "80R058037", "nmtbm28e80r058037"])
async def test_vin_tail(session, shop, service, typed):
    assert car_ids(await service.search(session, typed, box=Box.CAR)) == [shop["corolla"].id]


@pytest.mark.parametrize("typed", ["0123456", "nze121-0123456", "NZE121 0123456", "3456"])
async def test_body_number(session, shop, service, typed):
    assert car_ids(await service.search(session, typed, box=Box.CAR)) == [shop["camry"].id]


@pytest.mark.parametrize("typed", ["иванов", "ИВАНОВ", "ванов", "Иван Иванов", "иванов ив"])
async def test_names_case_insensitive_any_word_order(session, shop, service, typed):
    assert client_ids(await service.search(session, typed)) == [shop["ivanov"].id]


@pytest.mark.parametrize("typed", ["семенов", "Семёнов", "петр", "ПЁТР"])
async def test_yo_is_e(session, shop, service, typed):
    assert client_ids(await service.search(session, typed)) == [shop["semenov"].id]


async def test_discount_card_email_and_inn(session, shop, service):
    assert client_ids(await service.search(session, "dc7788", box=Box.CLIENT)) == [
        shop["ivanov"].id
    ]
    assert client_ids(await service.search(session, "IVANOV@mail", box=Box.CONTACT)) == [
        shop["ivanov"].id
    ]
    # INN is not in the default client box; configure it in
    assert (await service.search(session, "7712334545", box=Box.CLIENT)).clients == []
    custom = SearchService({"client": ("name", "inn"), "contact": ("phone",), "car": ("plate",)})
    assert client_ids(await custom.search(session, "77123345", box=Box.CLIENT)) == [
        shop["zubkov"].id
    ]


async def test_boxes_search_only_their_fields(session, shop, service):
    assert (await service.search(session, "иванов", box=Box.CAR)).found is False
    assert (await service.search(session, "n123ap", box=Box.CLIENT)).found is False
    assert (await service.search(session, "1231010", box=Box.CAR)).found is False
    result = await service.search(session, "1231010", box=Box.CONTACT)
    assert client_ids(result) == [shop["ivanov"].id]


async def test_short_terms_match_exact_or_prefix_only(session, shop, service):
    # "ив" starts "иванов иван": prefix match
    assert client_ids(await service.search(session, "ив")) == [shop["ivanov"].id]
    # "ан" is only inside names: no substring search under three characters
    assert (await service.search(session, "ан")).clients == []


async def test_ranking_exact_then_prefix_then_substring_then_recent(session, service):
    old_exact = await add_client(session, "Петров", days_ago=30)
    prefix_old = await add_client(session, "Петров Антон", days_ago=20)
    prefix_new = await add_client(session, "Петрова Анна", days_ago=1)
    inner = await add_client(session, "Анна Петрова-Водкина", days_ago=0)
    await session.commit()
    result = await service.search(session, "петров")
    assert client_ids(result) == [old_exact.id, prefix_new.id, prefix_old.id, inner.id]
    assert [c.tier for c in result.clients] == [
        Tier.EXACT,
        Tier.PREFIX,
        Tier.PREFIX,
        Tier.SUBSTRING,
    ]


async def test_paging(session, service):
    for i in range(25):
        await add_client(session, f"Клиент Сидоров {i:02d}", days_ago=i)
    await session.commit()
    first = await service.search(session, "сидоров", limit=10)
    third = await service.search(session, "сидоров", offset=20, limit=10)
    assert first.clients_total == 25 and len(first.clients) == 10 and len(third.clients) == 5
    assert not set(client_ids(first)) & set(client_ids(third))


async def test_clients_and_cars_found_together(session, service):
    orlov = await add_client(session, "Орлов Пётр", phone="+7 916 123-45-67", days_ago=1)
    car = await add_car(session, orlov, body_number="ZZT-1234567")
    other = await add_client(session, "Белов Иван", phone="+7 916 234-56-70", days_ago=2)
    await session.commit()
    result = await service.search(session, "1234567")
    assert client_ids(result) == [orlov.id] and car_ids(result) == [car.id]
    # One page of the search screen: the clients, then the cars.
    result = await service.search(session, "234567", limit=2, joined=True)
    assert (result.clients_total, result.cars_total) == (2, 1)
    assert client_ids(result) == [orlov.id, other.id] and result.cars == []
    result = await service.search(session, "234567", offset=2, limit=2, joined=True)
    assert result.clients == [] and car_ids(result) == [car.id]
    result = await service.search(session, "234567", offset=1, limit=2, joined=True)
    assert client_ids(result) == [other.id] and car_ids(result) == [car.id]
    # A page past the end (a stale pager button) still knows the totals.
    result = await service.search(session, "234567", offset=4, limit=2, joined=True)
    assert (result.clients, result.cars) == ([], [])
    assert (result.clients_total, result.cars_total) == (2, 1)


async def test_cap_says_there_is_more(session):
    for i in range(12):
        await add_client(session, f"Кузнецов {i}")
    await session.commit()
    result = await SearchService(cap=5).search(session, "кузнецов")
    assert result.more is True


HOSTILE = [
    "'",
    '"',
    "%",
    "_",
    "%%%",
    "___",
    "\\",
    '"; DROP TABLE clients; --',
    "' OR 1=1 --",
    "NEAR(a b)",
    "a AND b",
    "ив*",
    "*",
    "^",
    "{name}: x",
    "col:val",
    "🚗🚗🚗",
    "💥",
    "\x00abc",
    "a" * 100,
    " ",
    "-",
    "(",
    ")",
    "ив OR",
    "NOT иван",
    '"иванов"',
]


@pytest.mark.parametrize("typed", HOSTILE)
async def test_anything_typed_is_safe(session, shop, service, typed):
    result = await service.search(session, typed)
    assert result.problem in (None, Problem.EMPTY, Problem.NOTHING_TO_SEARCH)
    if typed in ("%", "_", "%%%", "___"):
        assert not result.found  # wildcards are literal characters


async def test_quoted_name_is_found_literally(session, shop, service):
    assert client_ids(await service.search(session, '"Строганов')) == [shop["stroganov"].id]


async def test_huge_and_empty_input_give_a_clear_problem(session, shop, service):
    assert (await service.search(session, "x" * 10_000)).problem is Problem.TOO_LONG
    assert (await service.search(session, "")).problem is Problem.EMPTY
    assert (await service.search(session, "   ")).problem is Problem.EMPTY


async def test_search_sees_changes_at_once(session, shop, service):
    ivanov = shop["ivanov"]
    await session.refresh(ivanov, ["contacts"])
    ivanov.contacts[0].value = parse_phone("+7 903 145-45-56")
    ivanov.name = "Иванов-Крамской Иван"
    await session.commit()
    assert client_ids(await service.search(session, "1454556")) == [ivanov.id]
    assert (await service.search(session, "1231010")).clients == []
    assert client_ids(await service.search(session, "крамской")) == [ivanov.id]
    car = shop["corolla"]
    car.plate = "В456ОК77"
    await session.commit()
    assert car_ids(await service.search(session, "b456ok")) == [car.id]
    assert (await service.search(session, "n123ap")).cars == []
    await session.delete(shop["camry"])
    await session.commit()
    assert (await service.search(session, "0123456")).cars == []


async def _bulk_terms(session, n):
    rows = [
        {"owner_type": "client", "owner_id": i, "field": "name", "term": f"клиент{i:06d} тестов"}
        for i in range(n)
    ]
    await session.execute(insert(SearchTerm), rows)
    await session.commit()


async def _plan(session, stmt, dialect):
    """The plan of ``stmt``. On PostgreSQL sequential scans are priced out, so that the
    plan shows whether an index can serve the query at all: on a test-sized table a scan
    is cheaper, at 1M rows the planner picks the index itself (see docs/performance.md)."""
    sql = str(
        stmt.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
    )
    if dialect != "sqlite":
        await session.execute(text("SET LOCAL enable_seqscan = off"))
    prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
    rows = (await session.execute(text(prefix + sql))).all()
    return "\n".join(str(r[-1]) for r in rows)


async def test_substring_search_uses_the_trigram_index(session, dialect):
    await _bulk_terms(session, 20_000)
    if dialect == "postgresql":
        await session.execute(text("ANALYZE search_terms"))
    stmt = search_repo.substring_query(dialect, ["123"], {"name"}, 1000)
    plan = await _plan(session, stmt, dialect)
    if dialect == "sqlite":
        assert "VIRTUAL TABLE INDEX" in plan and "search_fts_text" in plan, plan
        assert "SCAN search_terms" not in plan, plan
        # Codes and numbers: a range of the grams' B-tree.
        stmt = search_repo.substring_query(dialect, ["1234"], {"phone", "vin"}, 1000)
        plan = await _plan(session, stmt, dialect)
        assert "SEARCH search_grams USING PRIMARY KEY (gram>? AND gram<?)" in plan, plan
        assert "SCAN search_grams" not in plan and "SCAN search_terms" not in plan, plan
    else:
        assert "ix_search_terms_term_trgm" in plan, plan
        assert "Seq Scan" not in plan, plan


async def test_prefix_search_uses_the_btree(session, dialect):
    await _bulk_terms(session, 20_000)
    if dialect == "postgresql":
        await session.execute(text("ANALYZE search_terms"))
    plan = await _plan(session, search_repo.prefix_query(dialect, "кл", {"name"}, 1000), dialect)
    assert "ix_search_terms_term" in plan, plan
    assert "SCAN search_terms" not in plan and "Seq Scan" not in plan, plan


async def _sqlite_index(session, term_id: int) -> tuple[set[str], bool]:
    """What SQLite's substring indexes hold for a term: its grams, and whether the
    free-text index has it."""
    grams = set(
        await session.scalars(
            text("SELECT gram FROM search_grams WHERE term_id = :i"), {"i": term_id}
        )
    )
    # A contentless FTS5 table cannot be read row by row: its vocabulary can.
    await session.execute(
        text(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.text_vocab "
            "USING fts5vocab(main, search_fts_text, instance)"
        )
    )
    in_text = await session.scalar(
        text("SELECT count(*) FROM temp.text_vocab WHERE doc = :r"), {"r": -term_id}
    )
    return grams, bool(in_text)


@pytest.fixture
async def sqlite_session(sqlite_url):
    """SQLite only: its own indexes (PostgreSQL has one trigram index)."""
    engine = make_engine(sqlite_url)
    async with make_session_factory(engine)() as session:
        yield session
    await engine.dispose()


async def test_sqlite_triggers_keep_both_indexes_in_step(sqlite_session):
    """Written, changed and deleted through the ORM, a term is in the index of its kind of
    field only, with exactly its grams; the free-text index finds it by a fragment."""
    session = sqlite_session
    vin = SearchTerm(owner_type="car", owner_id=1, field="vin", term="XTA21099012345678")
    name = SearchTerm(owner_type="client", owner_id=1, field="name", term="петров пётр")
    session.add_all([vin, name])
    await session.commit()
    grams, in_text = await _sqlite_index(session, vin.id)
    assert grams == {vin.term[p : p + 8] for p in range(len(vin.term) - 2)} and not in_text
    assert await _sqlite_index(session, name.id) == (set(), True)
    found = await search_repo.substring_candidates(session, ["тров"], {"name"}, 10)
    assert [c.owner_id for c in found] == [1]

    vin.term = "WVWZZZ1JZ3W386752"
    name.field = "phone"  # a term moving to the other kind of field moves index
    name.term = "79161234567"
    await session.commit()
    grams, in_text = await _sqlite_index(session, vin.id)
    assert grams == {vin.term[p : p + 8] for p in range(len(vin.term) - 2)} and not in_text
    grams, in_text = await _sqlite_index(session, name.id)
    assert "91612345" in grams and not in_text
    assert await search_repo.substring_candidates(session, ["тров"], {"name"}, 10) == []
    assert [c.term for c in await search_repo.substring_candidates(
        session, ["3W386"], {"vin"}, 10
    )] == ["WVWZZZ1JZ3W386752"]  # fmt: skip

    await session.delete(vin)
    await session.delete(name)
    await session.commit()
    assert await _sqlite_index(session, vin.id) == (set(), False)
    assert await _sqlite_index(session, name.id) == (set(), False)
    assert await session.scalar(text("SELECT count(*) FROM search_grams")) == 0


async def test_a_long_code_fragment_is_checked_whole(session, dialect, shop):
    """Grams hold 8 characters: a longer fragment is looked up by its first 8 and checked
    against the whole value, so a VIN sharing only those 8 is not found."""
    a = await add_client(session, "Альфа")
    b = await add_client(session, "Бета")
    await add_car(session, a, vin="XTA21099012345678")
    await add_car(session, b, vin="XTA21099012399999")
    result = await SearchService().search(session, "A2109901234")
    assert [c.vin for c in result.cars] == ["XTA21099012345678"]
