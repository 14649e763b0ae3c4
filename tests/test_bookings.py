"""Repair bookings, car arrival and the tire hotel against a real database (SQLite and
PostgreSQL): the grid, no overlap even at the same moment, the notifications queued with
the change, the mileage rule, and what the filters and the car's history then show."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select, text

from services import arrivals, bookings, tires
from services.arrivals import ArrivalProblem, ArrivalRefused
from services.bookings import BookingProblem, BookingRefused, BookingRules
from services.filters import ClientFilter, FilterContext
from services.search import SearchService
from services.tires import TireDraft, TireProblem, TireRefused
from storage.models import (
    AuditLog,
    Booking,
    BookingState,
    Car,
    DocState,
    DocType,
    Document,
    Notification,
    Role,
    TireSeason,
    TireSetState,
)
from tests.factories import MOSCOW, make_car, make_client, make_document, make_staff, moscow

RULES = BookingRules(
    bays=("1", "2"),
    opens=time(9, 0),
    closes=time(19, 0),
    workdays=frozenset({1, 2, 3, 4, 5, 6}),
    slot_minutes=60,
    days_ahead=30,
    timezone="Europe/Moscow",
)
NOW = moscow(2026, 12, 7, 8, 0)  # a Monday, before opening
TUESDAY = date(2026, 12, 8)
SUNDAY = date(2026, 12, 13)


async def _shop(session):
    manager = await make_staff(session, "Анна Менеджер", Role.MANAGER)
    other = await make_staff(session, "Олег Менеджер", Role.MANAGER)
    master = await make_staff(session, "Пётр Мастер", Role.MASTER)
    client = await make_client(session, "Иванов Иван", manager=manager)
    car = await make_car(session, client, mileage=50_000)
    await session.commit()
    return manager, other, master, client, car


async def _notes(session, kind: str | None = None) -> list[Notification]:
    stmt = select(Notification).order_by(Notification.id)
    if kind:
        stmt = stmt.where(Notification.kind == kind)
    return list(await session.scalars(stmt))


# --- the grid -------------------------------------------------------------------------


def test_the_grid_of_a_day():
    assert RULES.slot_minutes_of_day() == [m * 60 for m in range(9, 19)]
    starts, ends = RULES.span(TUESDAY, 10 * 60)
    assert starts == moscow(2026, 12, 8, 10, 0) and ends - starts == timedelta(hours=1)
    days = RULES.bookable_days(NOW)
    assert days[0] == date(2026, 12, 7) and SUNDAY not in days
    late = moscow(2026, 12, 7, 18, 30)  # the last slot has begun: today is gone
    assert RULES.bookable_days(late)[0] == TUESDAY


@pytest.mark.parametrize(
    ("day", "minute", "bay", "problem"),
    [
        (date(2026, 12, 6), 600, "1", BookingProblem.PAST),
        (date(2026, 12, 7), 7 * 60, "1", BookingProblem.OUTSIDE_HOURS),
        (TUESDAY, 19 * 60, "1", BookingProblem.OUTSIDE_HOURS),
        (TUESDAY, 10 * 60 + 15, "1", BookingProblem.OUTSIDE_HOURS),
        (SUNDAY, 600, "1", BookingProblem.DAY_OFF),
        (date(2027, 3, 1), 600, "1", BookingProblem.TOO_FAR),
        (TUESDAY, 600, "9", BookingProblem.UNKNOWN_BAY),
    ],
)
def test_slots_that_cannot_be_booked(day, minute, bay, problem):
    with pytest.raises(BookingRefused) as refused:
        RULES.check(day, minute, bay, NOW)
    assert refused.value.problem is problem


# --- booking --------------------------------------------------------------------------


async def test_book_move_cancel_and_what_is_told(session):
    manager, other, _master, client, car = await _shop(session)
    b = await bookings.book(
        session, RULES, client_id=client.id, car_id=car.id, day=TUESDAY, minute=600,
        bay="1", reason="ТО-60", actor=other, now=NOW,
    )  # fmt: skip
    await session.commit()
    assert (b.state, b.bay, b.starts_at) == (BookingState.ACTIVE, "1", moscow(2026, 12, 8, 10))
    notes = await _notes(session)
    assert [(n.kind, n.client_id, n.staff_id, n.digestible) for n in notes] == [
        ("booking_confirmed", client.id, None, False),
        ("new_booking", None, manager.id, True),
    ]
    assert notes[0].key == f"booking_confirmed:{b.id}:{b.starts_at.isoformat()}"

    slots = await bookings.day_slots(session, RULES, TUESDAY, NOW)
    assert next(s for s in slots if s.minute == 600).free_bays == ("2",)

    await bookings.move(
        session, RULES, b.id, day=TUESDAY, minute=660, bay="2", actor=manager, now=NOW
    )
    await session.commit()
    confirmations = await _notes(session, "booking_confirmed")
    assert len(confirmations) == 2  # the move is told again, the manager is not told
    assert len(await _notes(session, "new_booking")) == 1

    await bookings.cancel(session, b.id, actor=manager, tz=RULES.timezone)
    await session.commit()
    assert [n.key for n in await _notes(session, "booking_cancelled")] == [
        f"booking_cancelled:{b.id}"
    ]
    with pytest.raises(BookingRefused) as refused:
        await bookings.cancel(session, b.id, actor=manager, tz=RULES.timezone)
    assert refused.value.problem is BookingProblem.NOT_ACTIVE
    await session.rollback()
    actions = await session.scalars(select(AuditLog.action).order_by(AuditLog.id))
    assert list(actions) == ["booking.create", "booking.move", "booking.cancel"]


async def test_booked_today_filter_reads_the_booking(session):
    manager, _other, _master, client, car = await _shop(session)
    await bookings.book(
        session, RULES, client_id=client.id, car_id=car.id, day=TUESDAY, minute=600,
        bay="1", reason=None, actor=manager, now=NOW,
    )  # fmt: skip
    await session.commit()
    service = SearchService()
    ctx = FilterContext.for_day(manager.id, MOSCOW, now=moscow(2026, 12, 8, 9))
    found = await service.search(
        session, "Иванов", filters=frozenset({ClientFilter.BOOKED_TODAY}), ctx=ctx
    )
    assert [c.id for c in found.clients] == [client.id]
    ctx = FilterContext.for_day(manager.id, MOSCOW, now=moscow(2026, 12, 9, 9))
    found = await service.search(
        session, "Иванов", filters=frozenset({ClientFilter.BOOKED_TODAY}), ctx=ctx
    )
    assert found.clients == []


async def test_a_taken_slot_and_a_foreign_car_are_refused(session):
    manager, _other, _master, client, car = await _shop(session)
    stranger = await make_client(session, "Петров Пётр", "+7 916 111-22-33")
    master = await make_staff(session, "Мастер", Role.MASTER)
    ids = {"client": client.id, "stranger": stranger.id, "car": car.id}
    await bookings.book(
        session, RULES, client_id=ids["client"], car_id=ids["car"], day=TUESDAY, minute=600,
        bay="1", reason=None, actor=manager, now=NOW,
    )  # fmt: skip
    await session.commit()
    attempts = [
        (manager, ids["stranger"], None, "1", BookingProblem.TAKEN),
        (manager, ids["stranger"], ids["car"], "2", BookingProblem.CAR_NOT_LINKED),
        (master, ids["client"], None, "2", BookingProblem.FORBIDDEN),
    ]
    for actor, client_id, car_id, bay, problem in attempts:
        with pytest.raises(BookingRefused) as refused:
            await bookings.book(
                session, RULES, client_id=client_id, car_id=car_id, day=TUESDAY, minute=600,
                bay=bay, reason=None, actor=actor, now=NOW,
            )  # fmt: skip
        assert refused.value.problem is problem
        await session.rollback()
        for member in (manager, master):
            await session.refresh(member)


async def test_two_managers_at_the_same_moment_one_wins(session_factory):
    async with session_factory() as s:
        manager, other, _master, client, car = await _shop(s)
        rival = await make_client(s, "Петров Пётр", "+7 916 111-22-33")
        await s.commit()
    start = asyncio.Event()

    async def attempt(actor, client_id, car_id):
        await start.wait()
        async with session_factory() as s:
            try:
                b = await bookings.book(
                    s, RULES, client_id=client_id, car_id=car_id, day=TUESDAY, minute=600,
                    bay="1", reason=None, actor=actor, now=NOW,
                )  # fmt: skip
                await s.commit()
                return b.id
            except BookingRefused as exc:
                await s.rollback()
                return exc.problem

    tasks = [
        asyncio.create_task(attempt(manager, client.id, car.id)),
        asyncio.create_task(attempt(other, rival.id, None)),
    ]
    start.set()
    results = await asyncio.gather(*tasks)
    assert sorted(map(str, results), key=lambda r: r.isdigit())[0] == "taken"
    assert sum(isinstance(r, int) for r in results) == 1
    async with session_factory() as s:
        rows = list(await s.scalars(select(Booking)))
        assert len(rows) == 1
        notes = await _notes(s, "booking_confirmed")
        assert [n.client_id for n in notes] == [rows[0].client_id]


async def test_reminders_for_tomorrow_once(session):
    manager, _other, _master, client, car = await _shop(session)
    b = await bookings.book(
        session, RULES, client_id=client.id, car_id=car.id, day=TUESDAY, minute=600,
        bay="1", reason=None, actor=manager, now=NOW,
    )  # fmt: skip
    await bookings.book(
        session, RULES, client_id=client.id, car_id=car.id, day=date(2026, 12, 9), minute=600,
        bay="1", reason=None, actor=manager, now=NOW,
    )  # fmt: skip
    await session.commit()
    evening = moscow(2026, 12, 7, 18)
    assert await bookings.queue_booking_reminders(session, evening, tz=MOSCOW) == 1
    assert await bookings.queue_booking_reminders(session, evening, tz="Europe/Moscow") == 0
    await session.commit()
    [reminder] = await _notes(session, "booking_reminder")
    assert reminder.key == f"booking_reminder:{b.id}:{b.starts_at.isoformat()}"


# --- arrival --------------------------------------------------------------------------


async def test_arrival_from_a_booking_puts_the_car_on_service(session):
    manager, _other, master, client, car = await _shop(session)
    b = await bookings.book(
        session, RULES, client_id=client.id, car_id=car.id, day=TUESDAY, minute=600,
        bay="1", reason=None, actor=manager, now=NOW,
    )  # fmt: skip
    await session.commit()
    doc = await arrivals.check_in(
        session, car_id=car.id, mileage=61_000, complaint="Стук спереди", master_id=master.id,
        actor=master, prefix="ЦОА", booking_id=b.id,
    )  # fmt: skip
    await session.commit()
    assert (doc.doc_type, doc.state, doc.master_id) == (
        DocType.WORK_ORDER,
        DocState.IN_PROGRESS,
        master.id,
    )
    assert doc.number.startswith("ЦОА") and doc.comment == "Стук спереди"
    assert (await session.get(Booking, b.id, populate_existing=True)).state == "arrived"
    assert (await session.get(Car, car.id, populate_existing=True)).mileage == 61_000
    [accepted] = await _notes(session, "order_accepted")
    assert accepted.key == f"order_accepted:{doc.id}" and accepted.client_id == client.id
    found = await SearchService().search(
        session,
        "Иванов",
        filters=frozenset({ClientFilter.ON_SERVICE}),
        ctx=FilterContext.for_day(manager.id, MOSCOW),
    )
    assert [c.id for c in found.clients] == [client.id]
    with pytest.raises(ArrivalRefused) as refused:  # not twice
        await arrivals.check_in(
            session, car_id=car.id, mileage=61_000, complaint="", master_id=master.id,
            actor=master, prefix="ЦОА",
        )  # fmt: skip
    assert refused.value.problem is ArrivalProblem.ON_SERVICE


async def test_a_lower_mileage_needs_confirmation(session):
    _manager, _other, master, client, car = await _shop(session)
    await make_document(session, client, DocType.WORK_ORDER, car=car, state=DocState.CLOSED)
    await session.execute(text("UPDATE documents SET mileage = 70000"))
    await session.commit()
    assert await arrivals.last_mileage(session, car.id) == 70_000
    with pytest.raises(ArrivalRefused) as refused:
        await arrivals.check_in(
            session, car_id=car.id, mileage=60_000, complaint="", master_id=master.id,
            actor=master, prefix="ЦОА",
        )  # fmt: skip
    assert (refused.value.problem, refused.value.detail) == (ArrivalProblem.MILEAGE_LOWER, "70000")
    car_id, master_id = car.id, master.id
    await session.rollback()
    await session.refresh(master)
    doc = await arrivals.check_in(
        session, car_id=car_id, mileage=60_000, complaint="", master_id=master_id,
        actor=master, prefix="ЦОА", lower_mileage_confirmed=True,
    )  # fmt: skip
    await session.commit()
    assert doc.mileage == 60_000
    [row] = await session.scalars(select(AuditLog).where(AuditLog.action == "car.mileage"))
    assert row.details["confirmed_lower"] is True


async def test_arrival_needs_a_master_and_the_right(session):
    manager, _other, _master, _client, car = await _shop(session)
    cashier = await make_staff(session, "Кассир", Role.CASHIER)
    with pytest.raises(ArrivalRefused) as refused:
        await arrivals.check_in(
            session, car_id=car.id, mileage=60_000, complaint="", master_id=manager.id,
            actor=manager, prefix="ЦОА",
        )  # fmt: skip
    assert refused.value.problem is ArrivalProblem.NOT_A_MASTER
    with pytest.raises(ArrivalRefused) as refused:
        await arrivals.check_in(
            session, car_id=car.id, mileage=60_000, complaint="", master_id=manager.id,
            actor=cashier, prefix="ЦОА",
        )  # fmt: skip
    assert refused.value.problem is ArrivalProblem.FORBIDDEN


def test_parse_mileage():
    assert arrivals.parse_mileage("123 456 км") == 123_456
    assert arrivals.parse_mileage("61,000") == 61_000
    assert arrivals.parse_mileage("много") is None
    assert arrivals.parse_mileage("-5") is None


# --- tire hotel -----------------------------------------------------------------------


def _draft(**changes) -> TireDraft:
    values = {
        "size": "205/55 R16",
        "season": TireSeason.WINTER,
        "count": 4,
        "with_wheels": True,
        "rack": "a",
        "shelf": "3",
        "brand": "Nokian",
        "tread_tenths_mm": 65,
        "fee": 300_000,
    }
    values.update(changes)
    return TireDraft(**values)


async def test_store_find_and_issue_a_set(session):
    _manager, _other, master, client, car = await _shop(session)
    row = await tires.store(session, client.id, _draft(car_id=car.id), actor=master)
    await session.commit()
    assert (row.rack, row.shelf, row.state) == ("A", "3", TireSetState.STORED)
    for query in ("a-3", "A/3", "n123ap", "945 123-10-10"):
        assert [s.id for s in await tires.find_sets(session, query)] == [row.id], query
    assert await tires.find_sets(session, "B-9") == []
    issued = await tires.issue(session, row.id, actor=master)
    await session.commit()
    assert issued.state == TireSetState.ISSUED and issued.issued_by_id == master.id
    with pytest.raises(TireRefused) as refused:
        await tires.issue(session, row.id, actor=master)
    assert refused.value.problem is TireProblem.ALREADY_ISSUED
    await session.rollback()
    actions = await session.scalars(select(AuditLog.action).order_by(AuditLog.id))
    assert list(actions) == ["tires.store", "tires.issue"]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"size": " "}, TireProblem.BAD_SIZE),
        ({"count": 0}, TireProblem.BAD_COUNT),
        ({"rack": ""}, TireProblem.BAD_PLACE),
        ({"fee": -1}, TireProblem.BAD_FEE),
        ({"tread_tenths_mm": 400}, TireProblem.BAD_TREAD),
    ],
)
async def test_a_bad_set_is_refused(session, changes, problem):
    _manager, _other, master, client, _car = await _shop(session)
    with pytest.raises(TireRefused) as refused:
        await tires.store(session, client.id, _draft(**changes), actor=master)
    assert refused.value.problem is problem


def test_places_and_tread():
    assert tires.parse_place("a-3") == ("A", "3")
    assert tires.parse_place("Б 12") == ("Б", "12")
    assert tires.parse_place("A3") is None
    assert tires.parse_tread("6,5 мм") == 65 and tires.parse_tread("7") == 70
    assert tires.parse_tread("abc") is None


async def test_season_reminders_once_per_season(session):
    _manager, _other, master, client, _car = await _shop(session)
    other = await make_client(session, "Петров Пётр", "+7 916 111-22-33")
    await tires.store(session, client.id, _draft(), actor=master)
    await tires.store(session, client.id, _draft(shelf="4"), actor=master)
    await tires.store(session, other.id, _draft(season=TireSeason.SUMMER), actor=master)
    await session.commit()
    autumn = datetime(2026, 10, 15, tzinfo=UTC)
    assert await tires.queue_tire_season_reminders(session, autumn, TireSeason.WINTER) == 1
    assert await tires.queue_tire_season_reminders(session, autumn, TireSeason.WINTER) == 0
    [note] = await _notes(session, "tire_season")
    assert (note.client_id, note.key) == (client.id, f"tire_season:winter:2026:{client.id}")
    next_autumn = datetime(2027, 10, 15, tzinfo=UTC)
    assert await tires.queue_tire_season_reminders(session, next_autumn, TireSeason.WINTER) == 1


async def test_the_car_history_shows_the_arrival(session):
    from services import cards

    _manager, _other, master, _client, car = await _shop(session)
    doc = await arrivals.check_in(
        session, car_id=car.id, mileage=60_000, complaint="", master_id=master.id,
        actor=master, prefix="ЦОА",
    )  # fmt: skip
    await session.commit()
    rows, total = await cards.car_history(session, car.id, offset=0, limit=10)
    assert total == 1 and rows[0].id == doc.id
    assert (await session.scalar(select(Document.state).where(Document.id == doc.id))) == (
        DocState.IN_PROGRESS
    )


def test_booking_settings_make_the_rules():
    from bot.config import Settings, SettingsError, load_settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        booking_bays="Пост 1, Пост 2",
        booking_opens="08:30",
        booking_closes="12:30",
        booking_slot_minutes=120,
    )
    rules = settings.booking_rules()
    assert rules.bays == ("Пост 1", "Пост 2")
    assert rules.slot_minutes_of_day() == [8 * 60 + 30, 10 * 60 + 30]
    assert rules.workdays == frozenset({1, 2, 3, 4, 5, 6})
    for bad in ({"booking_bays": "1,1"}, {"booking_closes": "09:30"}, {"booking_workdays": "8"}):
        with pytest.raises(SettingsError):
            load_settings(_env_file=None, **bad)
