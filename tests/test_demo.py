"""The demo shop (services.demo) and the bulk loader under it, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import shutil
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.demo import DemoError, generate, line_amount
from services.filters import ClientFilter, FilterContext
from services.normalize import car_terms, client_terms, is_vin, parse_phone
from services.numbering import next_number
from services.search import SearchService
from storage import search_repo
from storage.bulk import BulkLoader, search_index_migration
from storage.db import make_engine
from storage.filters import filters_condition
from storage.models import (
    Base,
    Booking,
    BookingState,
    Car,
    Client,
    ClientCar,
    ContactInfo,
    DiscountCard,
    DocCounter,
    DocState,
    DocType,
    Document,
    DocumentLine,
    Event,
    Payment,
    Reservation,
    SearchTerm,
)
from tests.conftest import PG_ADMIN_URL, _migrate, _pg_exec_autocommit

N = 200
SEED = 7
NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)  # 12:30 in Moscow
TZ = ZoneInfo("Europe/Moscow")
PLATE = re.compile(r"^[АВЕКМНОРСТУХ](?!000)\d{3}[АВЕКМНОРСТУХ]{2}\d{2,3}$")
FRAME = re.compile(r"^[A-Z0-9]+-\d{6,7}$")
NUMBER = re.compile(r"^ЦОА\d{7}$")


async def _demo(engine: AsyncEngine, **kwargs):
    args = {"clients": N, "seed": SEED, "tz": TZ, "now": NOW} | kwargs
    return await generate(engine, **args)


@pytest.fixture
async def demo(engine: AsyncEngine):
    return await _demo(engine)


@pytest.fixture
async def other_engine(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[AsyncEngine]:
    """A second migrated, empty database of the same kind."""
    if dialect == "sqlite":
        path = tmp_path / "other.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        engine = make_engine(f"sqlite+aiosqlite:///{path}")
        yield engine
        await engine.dispose()
        return
    name = f"ccbot_demo_{uuid.uuid4().hex[:10]}"
    await _pg_exec_autocommit(PG_ADMIN_URL, f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        await _migrate(url)
        engine = make_engine(url)
        yield engine
        await engine.dispose()
    finally:
        await _pg_exec_autocommit(PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _digest(engine: AsyncEngine) -> dict[str, str]:
    """A hash of every row of every table, in primary key order."""
    digests = {}
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            h = hashlib.sha256()
            for row in rows:
                h.update(repr(tuple(row)).encode())
            digests[table.name] = h.hexdigest()
    return digests


async def test_same_seed_gives_the_same_rows(engine, other_engine):
    first = await _demo(engine)
    second = await _demo(other_engine)
    assert str(first).split(";")[0] == str(second).split(";")[0]
    assert await _digest(engine) == await _digest(other_engine)


async def test_another_now_moves_only_the_times(engine, other_engine):
    await _demo(engine)
    await _demo(other_engine, now=NOW + timedelta(days=40, hours=7))
    what = [
        select(Client.id, Client.name, Client.inn, Client.main_phone, Client.manager_id),
        select(ContactInfo.id, ContactInfo.client_id, ContactInfo.kind, ContactInfo.value),
        select(Car.id, Car.name, Car.vin, Car.body_number, Car.plate, Car.configuration),
        select(ClientCar.client_id, ClientCar.car_id, ClientCar.role),
        select(Document.id, Document.doc_type, Document.number, Document.state,
               Document.client_id, Document.car_id, Document.base_id, Document.amount),
        select(DocumentLine.id, DocumentLine.document_id, DocumentLine.item,
               DocumentLine.amount),
        select(Event.id, Event.client_id, Event.car_id, Event.kind, Event.text),
        select(Booking.id, Booking.client_id, Booking.car_id, Booking.bay, Booking.reason),
        select(SearchTerm.id, SearchTerm.owner_id, SearchTerm.field, SearchTerm.term),
    ]  # fmt: skip
    for stmt in what:
        stmt = stmt.order_by(*stmt.selected_columns[:2])
        async with engine.connect() as a, other_engine.connect() as b:
            assert (await a.execute(stmt)).all() == (await b.execute(stmt)).all(), stmt
    async with engine.connect() as a, other_engine.connect() as b:
        stmt = select(Client.created_at).where(Client.id == 2)
        assert await a.scalar(stmt) != await b.scalar(stmt)


async def test_another_seed_gives_other_rows(engine, other_engine):
    await _demo(engine)
    await _demo(other_engine, seed=SEED + 1)
    a, b = await _digest(engine), await _digest(other_engine)
    assert a["clients"] != b["clients"] and a["cars"] != b["cars"]


async def test_summary_and_progress(engine):
    ticks: list[int] = []
    summary = await _demo(engine, progress=ticks.append)
    assert sum(ticks) == N
    assert summary.clients == N
    assert str(summary).startswith(f"demo shop: {N} clients")
    async with engine.connect() as conn:
        for model, counted in (
            (Client, summary.clients),
            (Car, summary.cars),
            (ClientCar, summary.client_cars),
            (Document, summary.documents),
            (DocumentLine, summary.document_lines),
            (SearchTerm, summary.search_terms),
            (Event, summary.events),
            (Booking, summary.bookings),
        ):
            assert await conn.scalar(select(func.count()).select_from(model)) == counted
    assert 1.1 <= summary.cars / N <= 1.7  # about 1.3 at scale; 200 clients wobble
    assert summary.client_cars > summary.cars  # some cars have an owner and a driver


async def test_refuses_a_database_with_clients(engine, demo):
    with pytest.raises(DemoError):
        await _demo(engine)


async def test_plates_vins_and_frame_numbers(engine, demo):
    async with engine.connect() as conn:
        cars = (await conn.execute(select(Car.plate, Car.vin, Car.body_number, Car.name))).all()
    assert all(PLATE.match(plate) for plate, *_ in cars if plate), [c[0] for c in cars]
    assert sum(plate is not None for plate, *_ in cars) >= 0.9 * len(cars)
    plates = [plate for plate, *_ in cars if plate]
    assert len(plates) == len(set(plates))
    for _plate, vin, body_number, name in cars:
        assert vin is None or body_number is None
        if vin is not None:
            assert is_vin(vin) and not set(vin) & set("IOQ"), vin
        if body_number is not None:
            assert FRAME.match(body_number), body_number
        assert re.match(r"^[A-Z-]+, .+", name), name
    assert any(body for _, _, body, _ in cars), "no Japanese-market car"


async def test_phones_are_e164_digits(engine, demo):
    async with engine.connect() as conn:
        phones = (
            await conn.scalars(
                select(ContactInfo.value).where(ContactInfo.kind.in_(["mobile", "phone"]))
            )
        ).all()
        mains = (
            await conn.execute(select(Client.id, Client.main_phone, Client.inn, Client.kind))
        ).all()
        contacts = defaultdict(set)
        for cid, value in await conn.execute(select(ContactInfo.client_id, ContactInfo.value)):
            contacts[cid].add(value)
    assert phones
    for phone in phones:
        assert parse_phone("+" + phone) == phone
    for cid, main, inn, kind in mains:
        assert main is None or main in contacts[cid]
        if inn is not None:
            assert inn.isdigit() and len(inn) in (10, 12)
            if len(inn) == 10:
                assert kind == "company"


async def test_seed_client_and_car_are_found(session, demo):
    service = SearchService()
    result = await service.search(session, "n123ap")
    assert [c.plate for c in result.cars][:1] == ["Н123АР77"]
    car = result.cars[0]
    assert car.vin == "NMTBM28E80R058037"
    assert car.name == "TOYOTA, COROLLA седан (_E12J_,_E12T_)"
    for typed in ("8 945 123-10-10", "ivanov@mail.ru", "Иванов Иван"):
        found = await service.search(session, typed)
        assert 1 in [c.id for c in found.clients], typed
    plan = (
        await session.execute(
            select(Document.number, Document.date).where(
                Document.client_id == 1, Document.doc_type == DocType.REPAIR_PLAN
            )
        )
    ).one()
    assert plan.number == "ЦОА0000001"
    assert plan.date.astimezone(TZ).strftime("%d.%m.%Y %H:%M") == "20.10.2020 10:59"
    order_amount = await session.scalar(
        select(Document.amount).where(
            Document.client_id == 1, Document.doc_type == DocType.CUSTOMER_ORDER
        )
    )
    assert order_amount == 11700  # 130,00 less 10 %, as on the seed's screenshot


async def test_search_terms_are_what_the_normalisation_makes(engine, demo):
    async with engine.connect() as conn:
        stored = {
            tuple(r)
            for r in await conn.execute(
                select(
                    SearchTerm.owner_type, SearchTerm.owner_id, SearchTerm.field, SearchTerm.term
                )
            )
        }
        count = await conn.scalar(select(func.count()).select_from(SearchTerm))
        cards = defaultdict(list)
        for cid, number in await conn.execute(
            select(DiscountCard.client_id, DiscountCard.number).order_by(DiscountCard.id)
        ):
            cards[cid].append(number)
        contacts = defaultdict(list)
        for cid, kind, value in await conn.execute(
            select(ContactInfo.client_id, ContactInfo.kind, ContactInfo.value).order_by(
                ContactInfo.id
            )
        ):
            contacts[cid].append((str(kind), value))
        expected = set()
        for cid, name, inn in await conn.execute(select(Client.id, Client.name, Client.inn)):
            for t in client_terms(name, inn, cards[cid], contacts[cid]):
                expected.add(("client", cid, t.field, t.term))
        for car_id, plate, vin, body in await conn.execute(
            select(Car.id, Car.plate, Car.vin, Car.body_number)
        ):
            for t in car_terms(plate, vin, body):
                expected.add(("car", car_id, t.field, t.term))
    assert count == len(stored) == len(expected)
    assert stored == expected


async def test_substring_index_is_back_and_complete(engine, session, dialect, demo):
    migration = search_index_migration(dialect)
    async with engine.connect() as conn:
        if dialect == "sqlite":
            triggers = await conn.scalars(
                text("SELECT sql FROM sqlite_master WHERE type = 'trigger'")
            )
            assert sorted(triggers) == sorted(migration.TRIGGERS_UP)
            columns = select(SearchTerm.id, SearchTerm.field, SearchTerm.term)
            terms = (await conn.execute(columns)).all()
            text_ids = {-i for i, f, _t in terms if f in search_repo.TEXT_FIELDS}
            # A contentless FTS5 table cannot be read row by row: its vocabulary can.
            await conn.execute(
                text(
                    "CREATE VIRTUAL TABLE temp.text_vocab "
                    "USING fts5vocab(main, search_fts_text, instance)"
                )
            )
            indexed = set(await conn.scalars(text("SELECT DISTINCT doc FROM temp.text_vocab")))
            assert indexed == text_ids
            await conn.execute(
                text("INSERT INTO search_fts_text (search_fts_text) VALUES ('integrity-check')")
            )
            grams = {
                (t[p : p + search_repo.GRAM], i)
                for i, f, t in terms
                if f not in search_repo.TEXT_FIELDS
                for p in range(len(t) - 2)
            }
            stored = await conn.execute(text("SELECT gram, term_id FROM search_grams"))
            assert set(stored.all()) == grams
        else:
            index = await conn.scalar(
                text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_search_terms_term_trgm'"
                )
            )
            assert index is not None and "gin_trgm_ops" in index
    # A substring only the trigram index can find: the middle of a VIN.
    vin = await session.scalar(select(Car.vin).where(Car.vin.is_not(None), Car.id > 50).limit(1))
    result = await SearchService().search(session, vin[5:12].lower(), limit=1000)
    assert vin in [c.vin for c in result.cars]


async def test_every_document_state_appears(engine, demo):
    async with engine.connect() as conn:
        pairs = {
            (doc_type, state)
            for doc_type, state in await conn.execute(
                select(Document.doc_type, Document.state).distinct()
            )
        }
    states = defaultdict(set)
    for doc_type, state in pairs:
        states[DocType(doc_type)].add(DocState(state))
    assert states[DocType.CUSTOMER_ORDER] >= {DocState.OPEN, DocState.CLOSED, DocState.CANCELLED}
    assert states[DocType.WORK_ORDER] >= {
        DocState.REQUEST,
        DocState.IN_PROGRESS,
        DocState.COMPLETED,
        DocState.CLOSED,
        DocState.CANCELLED,
    }
    assert states[DocType.REPAIR_REQUEST] and states[DocType.REPAIR_PLAN]
    for doc_type in (DocType.INVOICE, DocType.SALE, DocType.PAYMENT):
        assert states[doc_type] == {DocState.POSTED}


async def test_documents_add_up(engine, demo):
    async with engine.connect() as conn:
        docs = {
            d.id: d
            for d in await conn.execute(
                select(Document.id, Document.doc_type, Document.amount, Document.base_id)
            )
        }
        sums = defaultdict(int)
        for line in await conn.execute(select(DocumentLine)):
            expected = line_amount(
                line.price, line.qty_milli, line.norm_hours_milli, line.discount_bp
            )
            assert line.amount == expected
            sums[line.document_id] += line.amount
        paid = set(await conn.scalars(select(Payment.document_id)))
        reservations = (await conn.execute(select(Reservation))).all()
    for doc in docs.values():
        if doc.doc_type == DocType.PAYMENT:
            assert doc.id in paid and doc.amount > 0
            assert docs[doc.base_id].doc_type in (DocType.WORK_ORDER, DocType.CUSTOMER_ORDER)
        elif doc.doc_type != DocType.REPAIR_REQUEST:
            assert doc.amount == sums[doc.id] > 0, doc
        if doc.doc_type in (DocType.INVOICE, DocType.SALE):
            assert docs[doc.base_id].doc_type == DocType.CUSTOMER_ORDER
            assert doc.amount == docs[doc.base_id].amount
    assert any(r.released_at is None for r in reservations)
    assert all(docs[r.document_id].doc_type == DocType.CUSTOMER_ORDER for r in reservations)


async def test_numbers_unique_and_counters_continue(engine, session, demo):
    async with engine.connect() as conn:
        numbers = (await conn.execute(select(Document.doc_type, Document.number))).all()
        counters = {c.doc_type: c.last_value for c in await conn.execute(select(DocCounter))}
    assert all(NUMBER.match(n) for _, n in numbers)
    assert len(set(numbers)) == len(numbers)
    highest = defaultdict(int)
    for doc_type, number in numbers:
        highest[str(doc_type)] = max(highest[str(doc_type)], int(number[3:]))
    assert counters == dict(highest)
    number = await next_number(session, DocType.WORK_ORDER, "ЦОА")
    assert number == f"ЦОА{highest['work_order'] + 1:07d}"
    await session.rollback()


async def test_bookings_for_today_in_the_shop_time_zone(engine, session):
    tz = ZoneInfo("Asia/Vladivostok")  # far from UTC, so a wrong zone would show
    await _demo(engine, tz=tz)
    ctx = FilterContext.for_day(None, tz, NOW)
    async with engine.connect() as conn:
        starts = list(await conn.scalars(select(Booking.starts_at)))
        today = await conn.scalar(
            select(func.count())
            .select_from(Booking)
            .where(Booking.starts_at >= ctx.day_start, Booking.starts_at < ctx.day_end)
        )
    assert today >= 2
    assert all(9 <= s.astimezone(tz).hour < 20 for s in starts)
    booked = await session.scalars(
        select(Client.id).where(filters_condition({ClientFilter.BOOKED_TODAY}, ctx))
    )
    assert list(booked)
    for flt in ClientFilter:
        if flt is not ClientFilter.MINE:
            assert await session.scalar(
                select(func.count()).select_from(Client).where(filters_condition({flt}, ctx))
            ), flt


async def test_last_activity_is_the_latest_thing_that_happened(engine, demo):
    latest: dict[tuple[str, int], datetime] = {}

    def seen(key: tuple[str, int], at: datetime) -> None:
        latest[key] = max(latest.get(key, at), at)

    async with engine.connect() as conn:
        for cid, car_id, at in await conn.execute(
            select(Document.client_id, Document.car_id, Document.date)
        ):
            seen(("client", cid), at)
            if car_id:
                seen(("car", car_id), at)
        for cid, car_id, at in await conn.execute(
            select(Event.client_id, Event.car_id, Event.created_at)
        ):
            seen(("client", cid), at)
            if car_id:
                seen(("car", car_id), at)
        for cid, car_id, at in await conn.execute(
            select(Booking.client_id, Booking.car_id, Booking.created_at)
        ):
            seen(("client", cid), at)
            if car_id:
                seen(("car", car_id), at)
        clients = (
            await conn.execute(select(Client.id, Client.created_at, Client.last_activity_at))
        ).all()
        cars = (await conn.execute(select(Car.id, Car.created_at, Car.last_activity_at))).all()
    for kind, rows in (("client", clients), ("car", cars)):
        for oid, created, last in rows:
            assert last == max(created, latest.get((kind, oid), created)), (kind, oid)
            assert last <= NOW


async def test_ids_continue_after_the_bulk_load(engine, session, demo):
    top = await session.scalar(select(func.max(Client.id)))
    client = Client(name="Новиков Новый Клиентович", last_activity_at=NOW)
    session.add(client)
    await session.flush()
    car = Car(name="LADA, GRANTA седан (2190_)", plate="Х999ХХ799", last_activity_at=NOW)
    session.add(car)
    await session.flush()
    session.add(ClientCar(client_id=client.id, car_id=car.id))
    await session.commit()
    assert client.id == top + 1
    # the flush hook wrote its terms, and the restored triggers/index serve them
    found = await SearchService().search(session, "клиентович")
    assert [c.id for c in found.clients] == [client.id]
    found = await SearchService().search(session, "999хх")
    assert [c.id for c in found.cars] == [car.id]


async def test_foreign_keys_hold(engine, dialect, demo):
    async with engine.connect() as conn:
        if dialect == "sqlite":
            assert (await conn.execute(text("PRAGMA foreign_key_check"))).all() == []
            assert await conn.scalar(text("PRAGMA foreign_keys")) == 1
        else:
            role = await conn.scalar(text("SHOW session_replication_role"))
            assert role == "origin"


@pytest.mark.slow
def test_demo_is_fast_enough_for_a_million(tmp_path, sqlite_template):
    """A rough guard: 5 000 clients on SQLite in well under the time a million may take
    per 200 (the 1M build is measured in docs/performance.md)."""
    path = tmp_path / "speed.sqlite3"
    shutil.copy(sqlite_template, path)

    async def run() -> float:
        engine = make_engine(f"sqlite+aiosqlite:///{path}")
        try:
            summary = await generate(engine, clients=5000, seed=1, tz=TZ, now=NOW)
        finally:
            await engine.dispose()
        return summary.seconds

    assert asyncio.run(run()) < 30


async def _index_is_up(engine: AsyncEngine, dialect: str) -> bool:
    async with engine.connect() as conn:
        if dialect == "sqlite":
            sql = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
            return await conn.scalar(text(sql)) == 3
        sql = "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_search_terms_term_trgm'"
        return await conn.scalar(text(sql)) == 1


async def test_a_failed_load_puts_the_search_index_back(engine, session, dialect):
    term = {"id": 1, "owner_type": "car", "owner_id": 1, "field": "plate", "term": "А777АА77"}
    orphan = {"id": 1, "client_id": 999, "kind": "mobile", "value": "79161234567", "comment": None}
    with pytest.raises(Exception):  # noqa: B017 - IntegrityError or asyncpg's own
        async with BulkLoader(engine, defer_search_index=True) as loader:
            loader.add("search_terms", term)
            await loader.flush()
            loader.add("contact_info", orphan)  # no client 999
            await loader.flush()
    assert await _index_is_up(engine, dialect)
    # the committed chunk is indexed, and the next ORM insert gets a fresh id
    assert await session.scalar(select(func.count()).select_from(SearchTerm)) == 1
    session.add(SearchTerm(owner_type="car", owner_id=2, field="plate", term="В888ВВ77"))
    await session.commit()
    found = await search_repo.substring_candidates(session, ["777АА"], {"plate"}, 10)
    assert [c.owner_id for c in found] == [1]


async def test_references_checked_at_the_end_when_deferred(engine, dialect):
    orphan = {"id": 1, "client_id": 999, "kind": "mobile", "value": "79161234567", "comment": None}
    with pytest.raises(Exception, match=r"point nowhere|FOREIGN KEY|foreign key"):
        async with BulkLoader(engine, defer_reference_checks=True) as loader:
            loader.add("contact_info", orphan)
    async with engine.connect() as conn:
        if dialect == "postgresql":
            assert await conn.scalar(text("SHOW session_replication_role")) == "origin"


async def test_bookings_of_one_bay_never_overlap(engine):
    """As the booking service keeps them: a busy day opens another bay instead."""
    await _demo(engine, clients=3000)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(Booking.bay, Booking.starts_at, Booking.ends_at)
                .where(Booking.state != BookingState.CANCELLED)
                .order_by(Booking.bay, Booking.starts_at)
            )
        ).all()
    assert len(rows) > 50
    by_bay: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for bay, starts, ends in rows:
        by_bay[bay].append((starts, ends))
    for bay, spans in by_bay.items():
        for (_, ends), (starts, _) in itertools.pairwise(spans):
            assert ends <= starts, bay
