"""Repair booking (Запись на ремонт): a slot of the working day on a bay, for a client's car.

**The grid.** The shop's bays (posts), working hours, working weekdays and slot length come
from the settings (:class:`BookingRules`). A day's slots start at the opening time, one
slot apart, the last one ending by the closing time; times are shop-local wall times,
stored as aware UTC. A booking takes one slot. A slot in the past, on a day off, outside
the hours, off the grid or further ahead than ``days_ahead`` is refused.

**One bay, one car at a time.** Two bookings of one bay never overlap, even when two
managers take the same slot at the same moment. Writers are serialised (``BEGIN
IMMEDIATE`` on SQLite; a transaction-scoped advisory lock on PostgreSQL, held until
commit) and look before they write, so the second one sees the first one's booking and is
told :attr:`BookingProblem.TAKEN`. (No exclusion constraint in the database: history
brought from elsewhere may overlap, as bookings kept by hand on a whiteboard do. The demo
data keeps the rule: a full day opens another bay.)
A cancelled booking frees its time; an arrived one keeps it.

**Told in the same transaction.** Making or moving a booking queues the client's
confirmation (the key carries the start time, so a move queues a new one) and, when
someone other than the client's manager did it, a digestible note to the manager;
cancelling queues the client's cancellation. :func:`queue_booking_reminders` queues
tomorrow's reminders (the scheduler runs it daily; a re-run queues nothing new).

Every change is audited. Services never commit: the caller does (and rolls back on a
refusal).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit, outbox
from services.access import Permission, can
from services.outbox import Kind
from storage.db import begin_immediate
from storage.models import Booking, BookingState, Car, Client, ClientCar, Staff, utcnow

MAX_REASON = 500
# pg_advisory_xact_lock key of booking writers ("ccbk").
ADVISORY_KEY = 0x6363626B


class BookingProblem(enum.StrEnum):
    FORBIDDEN = "forbidden"
    CLIENT_NOT_FOUND = "client_not_found"
    CAR_NOT_LINKED = "car_not_linked"
    NOT_FOUND = "not_found"
    NOT_ACTIVE = "not_active"  # cancelled or arrived: cannot be moved or cancelled
    PAST = "past"
    DAY_OFF = "day_off"
    OUTSIDE_HOURS = "outside_hours"  # not a slot of the working day's grid
    TOO_FAR = "too_far"
    UNKNOWN_BAY = "unknown_bay"
    TAKEN = "taken"  # another booking holds the bay then
    TOO_LONG = "too_long"  # the reason


class BookingRefused(ValueError):
    def __init__(self, problem: BookingProblem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


@dataclass(frozen=True, slots=True)
class BookingRules:
    """The booking grid (see ``bot.config.Settings.booking_rules``)."""

    bays: tuple[str, ...]
    opens: time
    closes: time
    workdays: frozenset[int]  # ISO weekdays, 1 = Monday
    slot_minutes: int
    days_ahead: int
    timezone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def slot_minutes_of_day(self) -> list[int]:
        """Start minutes (from midnight) of the day's slots."""
        first = self.opens.hour * 60 + self.opens.minute
        last = self.closes.hour * 60 + self.closes.minute
        return list(range(first, last - self.slot_minutes + 1, self.slot_minutes))

    def span(self, day: date, minute: int) -> tuple[datetime, datetime]:
        """The UTC start and end of the slot at ``minute`` of the shop-local ``day``."""
        # Wall-clock arithmetic in the shop's zone, then UTC.
        local = datetime.combine(day, time.min, tzinfo=self.tz) + timedelta(minutes=minute)
        start = local.astimezone(UTC)
        return start, start + timedelta(minutes=self.slot_minutes)

    def today(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    def bookable_days(self, now: datetime) -> list[date]:
        """Working days from today to ``days_ahead`` days on (today only if a slot is left)."""
        today = self.today(now)
        days = []
        for offset in range(self.days_ahead + 1):
            day = today + timedelta(days=offset)
            if day.isoweekday() not in self.workdays:
                continue
            if offset == 0 and not any(
                self.span(day, m)[0] > now for m in self.slot_minutes_of_day()
            ):
                continue
            days.append(day)
        return days

    def check(self, day: date, minute: int, bay: str, now: datetime) -> tuple[datetime, datetime]:
        """The slot's UTC span, or :class:`BookingRefused` saying why it cannot be booked."""
        if bay not in self.bays:
            raise BookingRefused(BookingProblem.UNKNOWN_BAY, bay)
        if minute not in self.slot_minutes_of_day():
            raise BookingRefused(BookingProblem.OUTSIDE_HOURS, str(minute))
        starts, ends = self.span(day, minute)
        if starts <= now:
            raise BookingRefused(BookingProblem.PAST, starts.isoformat())
        if day.isoweekday() not in self.workdays:
            raise BookingRefused(BookingProblem.DAY_OFF, day.isoformat())
        if day > self.today(now) + timedelta(days=self.days_ahead):
            raise BookingRefused(BookingProblem.TOO_FAR, day.isoformat())
        return starts, ends


@dataclass(frozen=True, slots=True)
class Slot:
    minute: int  # from the shop-local midnight
    starts_at: datetime
    ends_at: datetime
    free_bays: tuple[str, ...]


# --- reading ------------------------------------------------------------------------


async def day_slots(
    session: AsyncSession, rules: BookingRules, day: date, now: datetime
) -> list[Slot]:
    """The slots of ``day`` still ahead, each with the bays free then (maybe none)."""
    spans = [(m, *rules.span(day, m)) for m in rules.slot_minutes_of_day()]
    spans = [s for s in spans if s[1] > now]
    if not spans:
        return []
    taken = (
        await session.execute(
            select(Booking.bay, Booking.starts_at, Booking.ends_at).where(
                Booking.state != BookingState.CANCELLED,
                Booking.starts_at < spans[-1][2],
                Booking.ends_at > spans[0][1],
            )
        )
    ).all()
    slots = []
    for minute, starts, ends in spans:
        busy = {bay for bay, b_start, b_end in taken if b_start < ends and starts < b_end}
        slots.append(Slot(minute, starts, ends, tuple(b for b in rules.bays if b not in busy)))
    return slots


async def upcoming(session: AsyncSession, client_id: int, now: datetime) -> list[Booking]:
    """The client's active bookings that have not ended, soonest first."""
    rows = await session.scalars(
        select(Booking)
        .where(
            Booking.client_id == client_id,
            Booking.state == BookingState.ACTIVE,
            Booking.ends_at > now,
        )
        .order_by(Booking.starts_at, Booking.id)
    )
    return list(rows)


async def todays_booking(
    session: AsyncSession, car_id: int, tz: ZoneInfo, now: datetime
) -> Booking | None:
    """The car's active booking of the shop's current day, if any (the arrival takes it)."""
    local = now.astimezone(tz).date()
    start = datetime.combine(local, time.min, tzinfo=tz).astimezone(UTC)
    return await session.scalar(
        select(Booking)
        .where(
            Booking.car_id == car_id,
            Booking.state == BookingState.ACTIVE,
            Booking.starts_at >= start,
            Booking.starts_at < start + timedelta(days=1),
        )
        .order_by(Booking.starts_at, Booking.id)
        .limit(1)
    )


# --- writing ------------------------------------------------------------------------


def _require(actor: Staff | None) -> Staff:
    if actor is None or not can(actor, Permission.BOOKINGS):
        raise BookingRefused(BookingProblem.FORBIDDEN)
    return actor


async def _lock(session: AsyncSession) -> None:
    """One booking writer at a time, until the transaction ends."""
    if not session.in_transaction():
        await begin_immediate(session)
    if (await session.connection()).dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_KEY})


async def _check_free(
    session: AsyncSession, bay: str, starts: datetime, ends: datetime, exclude: int | None
) -> None:
    stmt = select(Booking.id).where(
        Booking.bay == bay,
        Booking.state != BookingState.CANCELLED,
        Booking.starts_at < ends,
        Booking.ends_at > starts,
    )
    if exclude is not None:
        stmt = stmt.where(Booking.id != exclude)
    if await session.scalar(stmt.limit(1)) is not None:
        raise BookingRefused(BookingProblem.TAKEN, f"{bay} {starts.isoformat()}")


def _payload(booking: Booking, tz: str) -> dict[str, Any]:
    return {"booking_id": booking.id, "starts_at": booking.starts_at.isoformat(), "tz": tz}


async def _tell_made(session: AsyncSession, booking: Booking, actor: Staff, tz: str) -> None:
    """The client's confirmation; the manager's note when someone else did it."""
    version = booking.starts_at.isoformat()
    await outbox.enqueue(
        session,
        Kind.BOOKING_CONFIRMED,
        f"booking_confirmed:{booking.id}:{version}",
        client_id=booking.client_id,
        payload=_payload(booking, tz),
    )
    if booking.manager_id is not None and booking.manager_id != actor.id:
        await outbox.enqueue(
            session,
            Kind.NEW_BOOKING,
            f"new_booking:{booking.id}:{version}",
            staff_id=booking.manager_id,
            payload={**_payload(booking, tz), "by": actor.name},
            digestible=True,
        )


def _reason(reason: str | None) -> str | None:
    cleaned = (reason or "").strip()
    if len(cleaned) > MAX_REASON:
        raise BookingRefused(BookingProblem.TOO_LONG, str(MAX_REASON))
    return cleaned or None


async def book(
    session: AsyncSession,
    rules: BookingRules,
    *,
    client_id: int,
    car_id: int | None,
    day: date,
    minute: int,
    bay: str,
    reason: str | None,
    actor: Staff,
    now: datetime | None = None,
) -> Booking:
    """A new booking of ``bay`` at ``minute`` of ``day`` for the client's car."""
    _require(actor)
    now = now or utcnow()
    starts, ends = rules.check(day, minute, bay, now)
    cleaned = _reason(reason)
    await _lock(session)
    client = await session.get(Client, client_id, populate_existing=True)
    if client is None:
        raise BookingRefused(BookingProblem.CLIENT_NOT_FOUND, str(client_id))
    if car_id is not None:
        linked = await session.scalar(
            select(ClientCar.car_id).where(
                ClientCar.client_id == client_id, ClientCar.car_id == car_id
            )
        )
        if linked is None:
            raise BookingRefused(BookingProblem.CAR_NOT_LINKED, str(car_id))
    await _check_free(session, bay, starts, ends, None)
    booking = Booking(
        client_id=client_id,
        car_id=car_id,
        bay=bay,
        starts_at=starts,
        ends_at=ends,
        reason=cleaned,
        state=BookingState.ACTIVE,
        author_id=actor.id,
        manager_id=client.manager_id,
    )
    session.add(booking)
    await session.flush()
    audit.record(
        session,
        "booking.create",
        actor=actor,
        entity="booking",
        entity_id=booking.id,
        details={
            "client_id": client_id,
            "car_id": car_id,
            "bay": bay,
            "starts_at": starts.isoformat(),
            "reason": cleaned,
        },
    )
    await _tell_made(session, booking, actor, rules.timezone)
    return booking


async def _active(session: AsyncSession, booking_id: int) -> Booking:
    booking = await session.get(Booking, booking_id, populate_existing=True)
    if booking is None:
        raise BookingRefused(BookingProblem.NOT_FOUND, str(booking_id))
    if BookingState(booking.state) is not BookingState.ACTIVE:
        raise BookingRefused(BookingProblem.NOT_ACTIVE, str(booking.state))
    return booking


async def move(
    session: AsyncSession,
    rules: BookingRules,
    booking_id: int,
    *,
    day: date,
    minute: int,
    bay: str,
    actor: Staff,
    now: datetime | None = None,
) -> Booking:
    """Another slot for an active booking; the client is told again."""
    _require(actor)
    now = now or utcnow()
    starts, ends = rules.check(day, minute, bay, now)
    await _lock(session)
    booking = await _active(session, booking_id)
    if booking.bay == bay and booking.starts_at == starts:
        return booking
    await _check_free(session, bay, starts, ends, booking.id)
    before = {"bay": booking.bay, "starts_at": booking.starts_at.isoformat()}
    booking.bay, booking.starts_at, booking.ends_at = bay, starts, ends
    await session.flush()
    audit.record(
        session,
        "booking.move",
        actor=actor,
        entity="booking",
        entity_id=booking.id,
        details={
            "client_id": booking.client_id,
            "before": before,
            "after": {"bay": bay, "starts_at": starts.isoformat()},
        },
    )
    await _tell_made(session, booking, actor, rules.timezone)
    return booking


async def cancel(session: AsyncSession, booking_id: int, *, actor: Staff, tz: str) -> Booking:
    """Cancel an active booking: its time is free again, the client is told."""
    _require(actor)
    await _lock(session)
    booking = await _active(session, booking_id)
    booking.state = BookingState.CANCELLED
    await session.flush()
    audit.record(
        session,
        "booking.cancel",
        actor=actor,
        entity="booking",
        entity_id=booking.id,
        details={
            "client_id": booking.client_id,
            "bay": booking.bay,
            "starts_at": booking.starts_at.isoformat(),
        },
    )
    await outbox.enqueue(
        session,
        Kind.BOOKING_CANCELLED,
        f"booking_cancelled:{booking.id}",
        client_id=booking.client_id,
        payload=_payload(booking, tz),
    )
    return booking


# --- reminders ----------------------------------------------------------------------


async def queue_booking_reminders(
    session: AsyncSession, now: datetime, *, tz: ZoneInfo | str
) -> int:
    """Queue a reminder for every active booking of tomorrow (shop time); how many were
    queued now. The key names the booking and its start: a re-run queues nothing, a
    booking moved to tomorrow since gets its own."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    tomorrow = now.astimezone(zone).date() + timedelta(days=1)
    start = datetime.combine(tomorrow, time.min, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(tomorrow + timedelta(days=1), time.min, tzinfo=zone).astimezone(UTC)
    bookings = await session.scalars(
        select(Booking)
        .where(
            Booking.state == BookingState.ACTIVE,
            Booking.starts_at >= start,
            Booking.starts_at < end,
        )
        .order_by(Booking.starts_at, Booking.id)
    )
    queued = 0
    for booking in bookings:
        queued += await outbox.enqueue(
            session,
            Kind.BOOKING_REMINDER,
            f"booking_reminder:{booking.id}:{booking.starts_at.isoformat()}",
            client_id=booking.client_id,
            payload=_payload(booking, zone.key),
        )
    return queued


async def car_label(session: AsyncSession, car_id: int | None) -> str | None:
    """The car as a booking shows it: name and plate."""
    if car_id is None:
        return None
    car = await session.get(Car, car_id)
    if car is None:
        return None
    return f"{car.name} · {car.plate}" if car.plate else car.name


__all__ = [
    "BookingProblem",
    "BookingRefused",
    "BookingRules",
    "Slot",
    "book",
    "cancel",
    "car_label",
    "day_slots",
    "move",
    "queue_booking_reminders",
    "todays_booking",
    "upcoming",
]
