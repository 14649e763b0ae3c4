"""The seven filters of the workstation (the seed's checkboxes), combinable."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


class ClientFilter(enum.StrEnum):
    MINE = "mine"  # Только мои
    NEW_EVENTS = "events"  # С новыми событиями
    OPEN_ORDERS = "orders"  # С заказами
    RESERVED = "reserved"  # С товарами в резерве
    BOOKED_TODAY = "today"  # Записанные на сегодня
    ON_SERVICE = "service"  # Клиенты на сервисе
    AWAITING_PICKUP = "pickup"  # Ожидающие выдачи


@dataclass(frozen=True, slots=True)
class FilterContext:
    """What the filters need to know beyond the data: who asks and what "today" is."""

    staff_id: int | None
    day_start: datetime  # UTC bounds of the shop's current day
    day_end: datetime

    @classmethod
    def for_day(
        cls, staff_id: int | None, tz: ZoneInfo, now: datetime | None = None
    ) -> FilterContext:
        now = now or datetime.now(UTC)
        local_day: date = now.astimezone(tz).date()
        start = datetime.combine(local_day, time.min, tzinfo=tz)
        end = datetime.combine(local_day + timedelta(days=1), time.min, tzinfo=tz)
        return cls(staff_id, start.astimezone(UTC), end.astimezone(UTC))


def parse_filters(values: str | list[str] | tuple[str, ...]) -> frozenset[ClientFilter]:
    """``"events,orders"`` or a list of names -> the filters; unknown names raise ValueError."""
    items = values.split(",") if isinstance(values, str) else list(values)
    result = set()
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            result.add(ClientFilter(item))
        except ValueError:
            known = ", ".join(f.value for f in ClientFilter)
            raise ValueError(f"unknown filter {item!r}; known: {known}") from None
    return frozenset(result)
