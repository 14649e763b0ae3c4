"""What a linked client sees of their own: cars and their status, orders and debts,
bookings; and what they write to the shop.

Every function takes the client's id and reads only that client's rows: an id of another
client's order or car finds nothing (None), whoever sends it. Debts follow the ledger's
rules (``services.ledger``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services import audit, ledger, notify
from services.ledger import DOCUMENT_ROW_COLUMNS, DocumentRow, charges, document_row, paid_of
from storage.models import (
    Booking,
    BookingState,
    Car,
    Client,
    ClientCar,
    Direction,
    DocState,
    DocType,
    Document,
    DocumentLine,
    Event,
    EventKind,
)

ORDER_TYPES = (DocType.CUSTOMER_ORDER, DocType.WORK_ORDER)
# Orders the client still has business with: not finished yet on the shop's side.
OPEN_STATES = {
    DocType.CUSTOMER_ORDER: frozenset({DocState.OPEN}),
    DocType.WORK_ORDER: frozenset({DocState.REQUEST, DocState.IN_PROGRESS, DocState.COMPLETED}),
}
MAX_ORDERS = 20
MAX_BOOKINGS = 10
MAX_TEXT = 4000


# --- cars ---------------------------------------------------------------------------


class CarStatus:
    ON_SERVICE = "on_service"  # a work order in progress
    READY = "ready"  # a work order completed, the car not issued yet


@dataclass(frozen=True, slots=True)
class MyCar:
    id: int
    name: str
    plate: str | None
    vin: str | None
    status: str | None  # CarStatus or None
    order_number: str | None  # the work order the status comes from


async def my_cars(session: AsyncSession, client_id: int) -> list[MyCar]:
    """The client's cars, each with its status from the client's own open work orders
    (in progress wins over completed: the car is not ready while work goes on)."""
    cars = (
        await session.execute(
            select(Car.id, Car.name, Car.plate, Car.vin)
            .join(ClientCar, ClientCar.car_id == Car.id)
            .where(ClientCar.client_id == client_id)
            .order_by(Car.name, Car.id)
        )
    ).all()
    orders = await session.execute(
        select(Document.car_id, Document.state, Document.number)
        .where(
            Document.client_id == client_id,
            Document.doc_type == DocType.WORK_ORDER,
            Document.state.in_([DocState.IN_PROGRESS, DocState.COMPLETED]),
            Document.car_id.is_not(None),
        )
        .order_by(Document.date, Document.id)
    )
    status: dict[int | None, tuple[str, str]] = {}
    for car_id, state, number in orders:
        if DocState(state) is DocState.IN_PROGRESS:
            status[car_id] = (CarStatus.ON_SERVICE, number)
        elif car_id not in status or status[car_id][0] != CarStatus.ON_SERVICE:
            status[car_id] = (CarStatus.READY, number)
    result = []
    for car_id, name, plate, vin in cars:
        state_number = status.get(car_id)
        result.append(
            MyCar(
                car_id,
                name,
                plate,
                vin,
                state_number[0] if state_number else None,
                state_number[1] if state_number else None,
            )
        )
    return result


# --- orders and debts ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MyOrder:
    document: DocumentRow
    total: int
    paid: int
    debt: int  # negative: the client is in credit on it

    @property
    def payable(self) -> bool:
        """Whether the order takes a payment now (a charge with something owed)."""
        return self.debt > 0 and charges(self.document.doc_type, self.document.state)


@dataclass(frozen=True, slots=True)
class MyOrders:
    orders: list[MyOrder]
    debt: int  # the client's whole debt (ledger), negative when in credit


def _is_current(doc: DocumentRow, debt: int) -> bool:
    return doc.state in OPEN_STATES.get(doc.doc_type, frozenset()) or debt != 0


async def my_orders(session: AsyncSession, client_id: int) -> MyOrders:
    """The client's customer and work orders that are open or not settled, newest
    first, and the client's debt."""
    rows = await session.execute(
        select(*DOCUMENT_ROW_COLUMNS, paid_of(Document))
        .where(
            Document.client_id == client_id,
            Document.doc_type.in_(ORDER_TYPES),
            Document.state != DocState.CANCELLED,
        )
        .order_by(Document.date.desc(), Document.id.desc())
        .limit(200)
    )
    orders = []
    for row in rows:
        doc = document_row(row)
        paid = int(row[-1] or 0)
        debt = (doc.amount if charges(doc.doc_type, doc.state) else 0) - paid
        if _is_current(doc, debt):
            orders.append(MyOrder(doc, doc.amount, paid, debt))
    return MyOrders(orders[:MAX_ORDERS], await ledger.client_debt(session, client_id))


@dataclass(frozen=True, slots=True)
class MyOrderDetail:
    order: MyOrder
    car_name: str | None
    lines: list[DocumentLine] = field(default_factory=list)


async def my_order(session: AsyncSession, client_id: int, order_id: int) -> MyOrderDetail | None:
    """One of the client's orders with its lines; None when it is not theirs (or gone)."""
    doc = await session.scalar(
        select(Document)
        .where(
            Document.id == order_id,
            Document.client_id == client_id,
            Document.doc_type.in_(ORDER_TYPES),
        )
        .options(selectinload(Document.lines))
        .execution_options(populate_existing=True)
    )
    if doc is None:
        return None
    balance = await ledger.document_balance(session, doc.id)
    if balance is None:
        return None
    car_name = await session.scalar(select(Car.name).where(Car.id == doc.car_id))
    order = MyOrder(balance.document, balance.total, balance.paid, balance.debt)
    return MyOrderDetail(order, car_name, list(doc.lines))


# --- bookings -----------------------------------------------------------------------


async def my_bookings(
    session: AsyncSession, client_id: int, *, now: datetime | None = None
) -> list[tuple[Booking, str | None]]:
    """The client's active bookings that have not started yet, soonest first, with the
    car's name."""
    now = now or datetime.now(UTC)
    rows = await session.execute(
        select(Booking, Car.name)
        .outerjoin(Car, Car.id == Booking.car_id)
        .where(
            Booking.client_id == client_id,
            Booking.state == BookingState.ACTIVE,
            Booking.starts_at >= now,
        )
        .order_by(Booking.starts_at, Booking.id)
        .limit(MAX_BOOKINGS)
    )
    return [(booking, car_name) for booking, car_name in rows]


# --- messages from the client -------------------------------------------------------


async def record_incoming(
    session: AsyncSession,
    client: Client,
    text: str,
    *,
    chat_id: int,
    now: datetime | None = None,
) -> Event:
    """What the client wrote: a new (unprocessed) incoming Telegram event without a staff
    author, told to the client's manager. A client who writes is reachable again."""
    now = now or datetime.now(UTC)
    event = Event(
        client_id=client.id,
        kind=EventKind.TELEGRAM,
        direction=Direction.INCOMING,
        author_id=None,
        text=text[:MAX_TEXT],
        recipient=str(chat_id),
        created_at=now,
    )
    session.add(event)
    if client.telegram_blocked_at is not None:
        client.telegram_blocked_at = None
    await session.flush()
    await notify.event_created(session, event)
    await session.execute(
        update(Client)
        .where(Client.id == client.id, Client.last_activity_at < now)
        .values(last_activity_at=now)
    )
    audit.record(
        session,
        "event.telegram",
        actor_telegram_id=chat_id,
        entity="client",
        entity_id=client.id,
        details={"event_id": event.id, "direction": Direction.INCOMING.value},
    )
    return event
