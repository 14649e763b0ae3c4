"""The notification outbox: what to tell whom, queued in the transaction of the change.

A change that should be told (a work order completed, a new event, a booking made or
moved) calls :func:`enqueue` with the same session, before its commit: the notification
exists exactly when the change does. The delivery worker (``bot.delivery``) sends the rows
later, within Telegram's limits; a crash in between loses nothing.

``key`` names the thing told: what, which record, which version (``"order_ready:12"``,
``"booking:7:2026-12-04T10:00"``). Queueing a key that exists is a no-op, so a replayed
update or a second worker cannot queue the same message twice.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Notification, NotificationState

MAX_KEY = 200


class Kind(enum.StrEnum):
    """Every kind of notification; ``bot.alerts`` renders each."""

    # to clients
    ORDER_ACCEPTED = "order_accepted"  # a work order taken in (in progress)
    ORDER_READY = "order_ready"  # a work order completed: the car is ready
    BOOKING_CONFIRMED = "booking_confirmed"
    BOOKING_REMINDER = "booking_reminder"
    BOOKING_CANCELLED = "booking_cancelled"
    TIRE_SEASON = "tire_season"  # tires stored with us: time to change them
    ESTIMATE = "estimate"  # an estimate's lines to approve or decline, one by one
    # to staff
    NEW_EVENT = "new_event"  # a new unprocessed event of the manager's client
    NEW_REQUEST = "new_request"  # a new repair request
    NEW_BOOKING = "new_booking"  # a booking made or moved
    ESCALATION = "escalation"  # an event still unprocessed after the set time
    LINK_REQUEST = "link_request"  # a shared phone matched several clients
    UNREACHABLE = "unreachable"  # a client's chat answered 403
    DEAD_LETTER = "dead_letter"  # a notification given up after retries
    ESTIMATE_DECIDED = "estimate_decided"  # the client decided every line of an estimate


async def enqueue(
    session: AsyncSession,
    kind: Kind,
    key: str,
    *,
    client_id: int | None = None,
    staff_id: int | None = None,
    chat_id: int | None = None,
    payload: dict[str, Any] | None = None,
    urgent: bool = False,
    digestible: bool = False,
    not_before: datetime | None = None,
) -> bool:
    """Queue a notification in the session's transaction; False when ``key`` was queued
    before (nothing changes then). Exactly one recipient: a client, a staff member or a
    chat."""
    if sum(x is not None for x in (client_id, staff_id, chat_id)) != 1:
        raise ValueError("a notification has exactly one recipient")
    if not key or len(key) > MAX_KEY:
        raise ValueError(f"a notification key is 1..{MAX_KEY} characters: {key!r}")
    now = datetime.now(UTC)
    values = {
        "key": key,
        "kind": kind.value,
        "client_id": client_id,
        "staff_id": staff_id,
        "chat_id": chat_id,
        "payload": payload or {},
        "urgent": urgent,
        "digestible": digestible,
        "state": NotificationState.PENDING,
        "attempts": 0,
        "not_before": not_before or now,
        "created_at": now,
    }
    dialect = (await session.connection()).dialect.name
    stmt: Insert
    if dialect == "postgresql":
        stmt = (
            postgresql.insert(Notification)
            .values(values)
            .on_conflict_do_nothing(index_elements=[Notification.key])
        )
    elif dialect == "sqlite":
        stmt = (
            sqlite.insert(Notification)
            .values(values)
            .on_conflict_do_nothing(index_elements=[Notification.key])
        )
    else:
        raise NotImplementedError(f"no outbox for the {dialect} dialect")
    result = await session.execute(stmt.returning(Notification.id))
    return result.scalar_one_or_none() is not None


# --- quiet hours ----------------------------------------------------------------------


def parse_quiet_hours(value: str) -> tuple[time, time] | None:
    """``"21:00-09:00"`` -> (21:00, 09:00); ``""`` -> None (no quiet hours)."""
    if not value.strip():
        return None
    try:
        start_text, end_text = value.split("-")
        start, end = time.fromisoformat(start_text.zfill(5)), time.fromisoformat(end_text.zfill(5))
    except ValueError:
        raise ValueError(f"quiet hours are HH:MM-HH:MM, not {value!r}") from None
    if start == end:
        raise ValueError("quiet hours start and end at the same time")
    return start, end


def quiet_until(now: datetime, window: tuple[time, time] | None, tz: ZoneInfo) -> datetime | None:
    """When the quiet hours that ``now`` falls in end (UTC), or None when ``now`` is not in
    quiet hours. The window may span midnight (21:00-09:00)."""
    if window is None:
        return None
    start, end = window
    local = now.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= clock < end
        end_day = local.date()
    else:  # spans midnight
        inside = clock >= start or clock < end
        end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)
