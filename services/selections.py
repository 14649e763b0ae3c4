"""Selection history (История подборов): the parts and works picked for a car, by whom,
when and from where (a price list, the OEM catalogue, a repair plan, the cart).

A pick is recorded as it happens and never changed; the history of a car is read newest
first, one page at a time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.access import Permission, can
from storage.models import Car, Client, ClientCar, LineKind, Selection, Staff, utcnow

MAX_ITEM = 300
MAX_CATALOGUE_NUMBER = 60
MAX_MAKER = 100
MAX_PAGE = 50


class SelectionSource(enum.StrEnum):
    PRICE_LIST = "price_list"
    OEM = "oem"
    REPAIR_PLAN = "repair_plan"
    CART = "cart"


class SelectionProblem(enum.StrEnum):
    FORBIDDEN = "forbidden"
    CAR_NOT_FOUND = "car_not_found"
    CAR_NOT_LINKED = "car_not_linked"  # the client given is not the car's
    EMPTY = "empty"
    TOO_LONG = "too_long"
    BAD_SOURCE = "bad_source"


class SelectionRefused(ValueError):
    def __init__(self, problem: SelectionProblem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SelectionRow:
    id: int
    created_at: datetime
    kind: LineKind
    item: str
    catalogue_number: str | None
    maker: str | None
    source: str
    staff: str | None  # who picked it
    client_id: int | None


def _field(value: str | None, limit: int, what: str, *, required: bool = False) -> str | None:
    text = " ".join((value or "").split())
    if not text:
        if required:
            raise SelectionRefused(SelectionProblem.EMPTY, what)
        return None
    if len(text) > limit:
        raise SelectionRefused(SelectionProblem.TOO_LONG, f"{what}: at most {limit}")
    return text


async def record_pick(
    session: AsyncSession,
    *,
    staff: Staff,
    car_id: int | None,
    kind: LineKind,
    item: str,
    source: SelectionSource | str,
    catalogue_number: str | None = None,
    maker: str | None = None,
    client_id: int | None = None,
) -> Selection:
    """Records that ``staff`` picked ``item`` for the car (and the client, if given: one of
    the car's clients) from ``source``. Goods picked for a client without a car (the
    parts store) are recorded with ``car_id`` None and the client."""
    if not can(staff, Permission.CAR_HISTORY):
        raise SelectionRefused(SelectionProblem.FORBIDDEN)
    try:
        source = SelectionSource(source)
    except ValueError:
        raise SelectionRefused(SelectionProblem.BAD_SOURCE, str(source)) from None
    name = _field(item, MAX_ITEM, "item", required=True)
    number = _field(catalogue_number, MAX_CATALOGUE_NUMBER, "catalogue_number")
    made_by = _field(maker, MAX_MAKER, "maker")
    if car_id is None:
        if client_id is None or await session.get(Client, client_id) is None:
            raise SelectionRefused(SelectionProblem.CAR_NOT_FOUND, "no car, no client")
    elif await session.get(Car, car_id) is None:
        raise SelectionRefused(SelectionProblem.CAR_NOT_FOUND, str(car_id))
    if client_id is not None and car_id is not None:
        linked = await session.scalar(
            select(ClientCar.car_id).where(
                ClientCar.client_id == client_id, ClientCar.car_id == car_id
            )
        )
        if linked is None:
            raise SelectionRefused(SelectionProblem.CAR_NOT_LINKED, str(client_id))
    now = utcnow()
    pick = Selection(
        client_id=client_id,
        car_id=car_id,
        staff_id=staff.id,
        kind=LineKind(kind),
        item=name,
        catalogue_number=number,
        maker=made_by,
        source=source.value,
        created_at=now,
    )
    session.add(pick)
    await session.flush()
    if car_id is not None:
        await session.execute(
            update(Car)
            .where(Car.id == car_id, Car.last_activity_at < now)
            .values(last_activity_at=now)
        )
    if client_id is not None:
        await session.execute(
            update(Client)
            .where(Client.id == client_id, Client.last_activity_at < now)
            .values(last_activity_at=now)
        )
    return pick


async def car_selections(
    session: AsyncSession, car_id: int, *, offset: int = 0, limit: int = 10
) -> tuple[list[SelectionRow], int]:
    """The car's picks, newest first, one page, and the total."""
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    total = await session.scalar(
        select(func.count()).select_from(Selection).where(Selection.car_id == car_id)
    )
    rows = await session.execute(
        select(
            Selection.id,
            Selection.created_at,
            Selection.kind,
            Selection.item,
            Selection.catalogue_number,
            Selection.maker,
            Selection.source,
            Staff.name,
            Selection.client_id,
        )
        .outerjoin(Staff, Staff.id == Selection.staff_id)
        .where(Selection.car_id == car_id)
        .order_by(Selection.created_at.desc(), Selection.id.desc())
        .offset(offset)
        .limit(limit)
    )
    page = [
        SelectionRow(sid, at, LineKind(kind), item, number, maker, source, who, client)
        for sid, at, kind, item, number, maker, source, who, client in rows
    ]
    return page, int(total or 0)


__all__ = [
    "SelectionProblem",
    "SelectionRefused",
    "SelectionRow",
    "SelectionSource",
    "car_selections",
    "record_pick",
]
