"""The renderers of the booking and tire-season notifications, called as the delivery worker
will: with a session and the queued row. A booking moved or cancelled since, or a set
issued since, renders nothing (the row is dropped, not sent)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from aiogram.utils.i18n import I18n
from sqlalchemy import select

import handlers.booking  # registers the renderers (and handlers.tires below)
import handlers.tires  # noqa: F401
from bot.i18n import make_i18n
from handlers.alerts import RENDERERS, AlertContext
from services import bookings, tires
from services.bookings import BookingRules
from services.tires import TireDraft
from storage.models import Notification, Role, TireSeason
from tests.factories import make_car, make_client, make_staff

CTX = AlertContext(tz=ZoneInfo("Europe/Moscow"))


def _rules() -> BookingRules:
    return BookingRules(
        bays=("1", "2"),
        opens=time(0, 0),
        closes=time(23, 0),
        workdays=frozenset(range(1, 8)),
        slot_minutes=60,
        days_ahead=30,
        timezone="Europe/Moscow",
    )


async def _render(session, note: Notification):
    i18n: I18n = make_i18n("ru")
    with i18n.context(), i18n.use_locale("ru"):
        return await RENDERERS[note.kind](session, note, CTX)


async def _notes(session, kind: str) -> list[Notification]:
    rows = await session.scalars(
        select(Notification).where(Notification.kind == kind).order_by(Notification.id)
    )
    return list(rows)


async def test_booking_renderers_follow_the_booking(session):
    rules = _rules()
    manager = await make_staff(session, "Анна Менеджер", Role.MANAGER)
    other = await make_staff(session, "Олег Менеджер", Role.MANAGER)
    client = await make_client(session, "Иванов Иван", manager=manager)
    car = await make_car(session, client, plate="Н123АР77")
    day = (datetime.now(UTC).astimezone(rules.tz) + timedelta(days=2)).date()
    b = await bookings.book(
        session, rules, client_id=client.id, car_id=car.id, day=day, minute=600, bay="1",
        reason=None, actor=other,
    )  # fmt: skip
    await session.commit()
    [confirmed] = await _notes(session, "booking_confirmed")
    [new] = await _notes(session, "new_booking")
    shown = await _render(session, confirmed)
    assert shown is not None and "Вы записаны на ремонт" in shown.text
    assert "10:00" in shown.text and "Н123АР77" in shown.text
    shown = await _render(session, new)
    assert shown is not None and "Иванов Иван" in shown.text and "Олег Менеджер" in shown.text
    assert shown.markup is not None

    await bookings.move(session, rules, b.id, day=day, minute=660, bay="2", actor=manager)
    await session.commit()
    assert await _render(session, confirmed) is None  # moved since: the old one is dropped
    assert await _render(session, new) is None
    moved = (await _notes(session, "booking_confirmed"))[-1]
    shown = await _render(session, moved)
    assert shown is not None and "11:00" in shown.text

    now = datetime.combine(day - timedelta(days=1), time(18), tzinfo=rules.tz)
    assert await bookings.queue_booking_reminders(session, now, tz=rules.tz) == 1
    await session.commit()
    [reminder] = await _notes(session, "booking_reminder")
    shown = await _render(session, reminder)
    assert shown is not None and "завтра в <b>11:00</b>" in shown.text

    await bookings.cancel(session, b.id, actor=manager, tz=rules.timezone)
    await session.commit()
    assert await _render(session, moved) is None
    assert await _render(session, reminder) is None
    [cancelled] = await _notes(session, "booking_cancelled")
    shown = await _render(session, cancelled)
    assert shown is not None and "отменена" in shown.text


async def test_tire_season_renderer_while_the_set_is_stored(session):
    master = await make_staff(session, "Пётр Мастер", Role.MASTER)
    client = await make_client(session, "Иванов Иван")
    draft = TireDraft(
        size="205/55 R16", season=TireSeason.WINTER, count=4, with_wheels=True, rack="A",
        shelf="3",
    )  # fmt: skip
    row = await tires.store(session, client.id, draft, actor=master)
    await tires.queue_tire_season_reminders(session, datetime.now(UTC), TireSeason.WINTER)
    await session.commit()
    [note] = await _notes(session, "tire_season")
    shown = await _render(session, note)
    assert shown is not None and "зимнюю" in shown.text and "205/55 R16" in shown.text
    await tires.issue(session, row.id, actor=master)
    await session.commit()
    assert await _render(session, note) is None
