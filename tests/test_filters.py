"""The seven filters of the workstation, alone, combined and with a search string."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.filters import ClientFilter, FilterContext, parse_filters
from services.search import SearchService, list_clients
from storage.models import (
    Booking,
    Client,
    DocState,
    DocType,
    Document,
    Event,
    EventKind,
    Reservation,
    Role,
    Staff,
    Warehouse,
)

MSK = ZoneInfo("Europe/Moscow")
# 23:30 in Moscow on 3 December is 20:30 UTC: "today" is the shop's day, not UTC's.
NOW = datetime(2026, 12, 3, 20, 30, tzinfo=UTC)


@pytest.fixture
async def world(session):
    me = Staff(telegram_id=1, name="Мастер Я", role=Role.MANAGER)
    other = Staff(telegram_id=2, name="Другой", role=Role.MANAGER)
    wh = Warehouse(name="Основной")
    session.add_all([me, other, wh])
    await session.flush()
    names = [
        "mine",
        "events",
        "orders",
        "reserved",
        "today",
        "service",
        "pickup",
        "plain",
        "closed",
        "tomorrow",
    ]
    c = {n: Client(name=f"Клиент {n}") for n in names}
    session.add_all(c.values())
    await session.flush()
    n = 0

    def doc(client, doc_type, state, **kw):
        nonlocal n
        n += 1
        return Document(
            doc_type=doc_type, number=f"ЦОА{n:07d}", state=state, client_id=client.id, **kw
        )

    order = doc(c["reserved"], DocType.CUSTOMER_ORDER, DocState.CLOSED)
    session.add_all(
        [
            doc(c["mine"], DocType.WORK_ORDER, DocState.CLOSED, manager_id=me.id),
            doc(c["plain"], DocType.WORK_ORDER, DocState.CLOSED, manager_id=other.id),
            doc(c["orders"], DocType.CUSTOMER_ORDER, DocState.OPEN, author_id=other.id),
            doc(c["closed"], DocType.CUSTOMER_ORDER, DocState.CLOSED),
            doc(c["closed"], DocType.CUSTOMER_ORDER, DocState.CANCELLED),
            doc(c["service"], DocType.WORK_ORDER, DocState.IN_PROGRESS),
            doc(c["pickup"], DocType.WORK_ORDER, DocState.COMPLETED),
            order,
            Event(client_id=c["events"].id, kind=EventKind.CALL, text="перезвонить"),
            Event(
                client_id=c["plain"].id,
                kind=EventKind.NOTE,
                processed_at=NOW,
                processed_by_id=me.id,
                author_id=other.id,
            ),
        ]
    )
    await session.flush()
    session.add_all(
        [
            Reservation(
                client_id=c["reserved"].id,
                document_id=order.id,
                warehouse_id=wh.id,
                qty_milli=1000,
            ),
            Reservation(
                client_id=c["closed"].id,
                document_id=order.id,
                warehouse_id=wh.id,
                qty_milli=1000,
                released_at=NOW,
            ),
            # 00:30 on 4 December in Moscow is still 3 December in UTC: not today.
            Booking(
                client_id=c["tomorrow"].id,
                bay="1",
                starts_at=datetime(2026, 12, 3, 21, 30, tzinfo=UTC),
                ends_at=datetime(2026, 12, 3, 22, 30, tzinfo=UTC),
            ),
            # 09:00 Moscow on 3 December
            Booking(
                client_id=c["today"].id,
                bay="1",
                starts_at=datetime(2026, 12, 3, 6, 0, tzinfo=UTC),
                ends_at=datetime(2026, 12, 3, 7, 0, tzinfo=UTC),
            ),
        ]
    )
    await session.commit()
    return {"clients": c, "me": me, "other": other}


def ctx_for(world):
    return FilterContext.for_day(world["me"].id, MSK, NOW)


async def names_for(session, world, *filters):
    hits, total = await list_clients(session, frozenset(filters), ctx_for(world), limit=50)
    assert total == len(hits)
    return {h.name.removeprefix("Клиент ") for h in hits}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (ClientFilter.MINE, {"mine"}),
        (ClientFilter.NEW_EVENTS, {"events"}),
        (ClientFilter.OPEN_ORDERS, {"orders"}),
        (ClientFilter.RESERVED, {"reserved"}),
        (ClientFilter.BOOKED_TODAY, {"today"}),
        (ClientFilter.ON_SERVICE, {"service"}),
        (ClientFilter.AWAITING_PICKUP, {"pickup"}),
    ],
)
async def test_each_filter(session, world, flt, expected):
    assert await names_for(session, world, flt) == expected


async def test_mine_covers_events_i_wrote_and_orders_i_authored(session, world):
    other = world["other"]
    # the other manager: a processed note they wrote, an order they authored
    ctx = FilterContext.for_day(other.id, MSK, NOW)
    hits, _ = await list_clients(session, frozenset({ClientFilter.MINE}), ctx, limit=50)
    assert {h.name for h in hits} == {"Клиент plain", "Клиент orders"}


async def test_filters_combine(session, world):
    c = world["clients"]
    session.add(Event(client_id=c["service"].id, kind=EventKind.SMS, text="готово?"))
    await session.commit()
    assert await names_for(session, world, ClientFilter.NEW_EVENTS) == {"events", "service"}
    assert await names_for(session, world, ClientFilter.NEW_EVENTS, ClientFilter.ON_SERVICE) == {
        "service"
    }
    assert (
        await names_for(session, world, ClientFilter.AWAITING_PICKUP, ClientFilter.ON_SERVICE)
        == set()
    )


async def test_filters_with_a_search_string(session, world):
    result = await SearchService().search(
        session, "клиент", filters=frozenset({ClientFilter.ON_SERVICE}), ctx=ctx_for(world)
    )
    assert [c.name for c in result.clients] == ["Клиент service"]


async def test_no_filters_lists_everyone_most_recent_first(session, world):
    assert len(await names_for(session, world)) == 10


async def test_mine_needs_a_staff_member():
    with pytest.raises(ValueError):
        from storage.filters import filter_condition

        filter_condition(ClientFilter.MINE, FilterContext.for_day(None, MSK, NOW))


def test_parse_filters():
    assert parse_filters("events, orders") == {ClientFilter.NEW_EVENTS, ClientFilter.OPEN_ORDERS}
    with pytest.raises(ValueError, match="unknown filter"):
        parse_filters("vip")


def test_day_bounds_follow_the_shop_time_zone():
    ctx = FilterContext.for_day(None, MSK, NOW)
    assert ctx.day_start == datetime(2026, 12, 2, 21, 0, tzinfo=UTC)
    assert ctx.day_end - ctx.day_start == timedelta(days=1)
