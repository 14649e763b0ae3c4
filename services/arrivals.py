"""Car arrival (Машинозаезд): the car is checked in and a work order goes into work.

:func:`check_in` writes, in one transaction: the work order (Заказ-наряд) in progress with
its number, the master, the mileage and the client's complaint; the car's mileage; the
booking it came by, now ``ARRIVED``; the audit rows; and the client's "order accepted"
notification. The car then shows under the "on service" filter and in its history.

The mileage never goes below the last one recorded (the car's, or any of its documents')
unless the caller says it was confirmed (an odometer replaced, a typo in the past). A car
already on service (a work order of it in progress) is not checked in twice.
"""

from __future__ import annotations

import enum

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit, outbox
from services.access import Permission, can
from services.documents import start_write
from services.numbering import next_number
from services.outbox import Kind
from storage.models import (
    Booking,
    BookingState,
    Car,
    CarRole,
    Client,
    ClientCar,
    DocState,
    DocType,
    Document,
    Role,
    Staff,
    utcnow,
)

MAX_MILEAGE = 3_000_000  # km
MAX_COMPLAINT = 2000


class ArrivalProblem(enum.StrEnum):
    FORBIDDEN = "forbidden"
    CAR_NOT_FOUND = "car_not_found"
    NO_CLIENT = "no_client"  # the car has no client to make the work order for
    CAR_NOT_LINKED = "car_not_linked"
    BOOKING_NOT_FOUND = "booking_not_found"
    BOOKING_NOT_ACTIVE = "booking_not_active"
    BAD_MILEAGE = "bad_mileage"
    MILEAGE_LOWER = "mileage_lower"  # detail: the last mileage; confirm to go on
    NOT_A_MASTER = "not_a_master"
    ON_SERVICE = "on_service"  # detail: the number of the work order in progress
    TOO_LONG = "too_long"


class ArrivalRefused(ValueError):
    def __init__(self, problem: ArrivalProblem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


def parse_mileage(text: str) -> int | None:
    """ "123 456", "123456 км", "123,456" -> 123456; None when it is not a mileage."""
    cleaned = text.lower().replace("км", "").replace("km", "")
    for ch in " \u00a0,._'":
        cleaned = cleaned.replace(ch, "")
    if not cleaned.isdigit() or len(cleaned) > 8:
        return None
    value = int(cleaned)
    return value if value <= MAX_MILEAGE else None


async def last_mileage(session: AsyncSession, car_id: int) -> int | None:
    """The highest mileage recorded for the car: on the car or on any of its documents."""
    car_value = await session.scalar(select(Car.mileage).where(Car.id == car_id))
    doc_value = await session.scalar(
        select(func.max(Document.mileage)).where(Document.car_id == car_id)
    )
    values = [v for v in (car_value, doc_value) if v is not None]
    return max(values) if values else None


async def masters(session: AsyncSession) -> list[Staff]:
    """Who can be given the car: active masters, by name."""
    rows = await session.scalars(
        select(Staff)
        .where(Staff.active.is_(True), Staff.role == Role.MASTER)
        .order_by(Staff.name, Staff.id)
    )
    return list(rows)


async def car_client(session: AsyncSession, car_id: int) -> int | None:
    """The client a check-in of the car is for when no booking says: the owner first."""
    return await session.scalar(
        select(ClientCar.client_id)
        .where(ClientCar.car_id == car_id)
        .order_by((ClientCar.role != CarRole.OWNER), ClientCar.client_id)
        .limit(1)
    )


async def in_progress(session: AsyncSession, car_id: int) -> Document | None:
    return await session.scalar(
        select(Document)
        .where(
            Document.car_id == car_id,
            Document.doc_type == DocType.WORK_ORDER,
            Document.state == DocState.IN_PROGRESS,
        )
        .limit(1)
    )


async def check_in(
    session: AsyncSession,
    *,
    car_id: int,
    mileage: int,
    complaint: str,
    master_id: int,
    actor: Staff,
    prefix: str,
    booking_id: int | None = None,
    client_id: int | None = None,
    lower_mileage_confirmed: bool = False,
) -> Document:
    """Check the car in: the work order, in progress. See the module's docstring."""
    if not can(actor, Permission.ARRIVAL):
        raise ArrivalRefused(ArrivalProblem.FORBIDDEN)
    if not 0 <= mileage <= MAX_MILEAGE:
        raise ArrivalRefused(ArrivalProblem.BAD_MILEAGE, str(mileage))
    complaint = complaint.strip()
    if len(complaint) > MAX_COMPLAINT:
        raise ArrivalRefused(ArrivalProblem.TOO_LONG, str(MAX_COMPLAINT))
    await start_write(session)
    car = await session.get(Car, car_id, populate_existing=True)
    if car is None:
        raise ArrivalRefused(ArrivalProblem.CAR_NOT_FOUND, str(car_id))
    booking = None
    if booking_id is not None:
        booking = await session.get(Booking, booking_id, populate_existing=True)
        if booking is None or booking.car_id not in (None, car_id):
            raise ArrivalRefused(ArrivalProblem.BOOKING_NOT_FOUND, str(booking_id))
        if BookingState(booking.state) is not BookingState.ACTIVE:
            raise ArrivalRefused(ArrivalProblem.BOOKING_NOT_ACTIVE, str(booking.state))
        client_id = booking.client_id
    if client_id is None:
        client_id = await car_client(session, car_id)
        if client_id is None:
            raise ArrivalRefused(ArrivalProblem.NO_CLIENT, str(car_id))
    client = await session.get(Client, client_id)
    linked = await session.scalar(
        select(ClientCar.car_id).where(
            ClientCar.client_id == client_id, ClientCar.car_id == car_id
        )
    )
    if client is None or linked is None:
        raise ArrivalRefused(ArrivalProblem.CAR_NOT_LINKED, f"{client_id}/{car_id}")
    master = await session.get(Staff, master_id)
    if master is None or not master.active or Role(master.role) is not Role.MASTER:
        raise ArrivalRefused(ArrivalProblem.NOT_A_MASTER, str(master_id))
    busy = await in_progress(session, car_id)
    if busy is not None:
        raise ArrivalRefused(ArrivalProblem.ON_SERVICE, busy.number)
    last = await last_mileage(session, car_id)
    if last is not None and mileage < last and not lower_mileage_confirmed:
        raise ArrivalRefused(ArrivalProblem.MILEAGE_LOWER, str(last))

    manager_id = client.manager_id
    if manager_id is None and Role(actor.role) is Role.MANAGER:
        manager_id = actor.id
    doc = Document(
        doc_type=DocType.WORK_ORDER,
        number=await next_number(session, DocType.WORK_ORDER, prefix),
        state=DocState.IN_PROGRESS,
        client_id=client.id,
        car_id=car_id,
        organization_id=client.organization_id,
        author_id=actor.id,
        manager_id=manager_id,
        master_id=master.id,
        mileage=mileage,
        comment=complaint or None,
        amount=0,
    )
    session.add(doc)
    await session.flush()
    if car.mileage != mileage:
        audit.record(
            session,
            "car.mileage",
            actor=actor,
            entity="car",
            entity_id=car.id,
            details={
                "before": car.mileage,
                "after": mileage,
                "confirmed_lower": last is not None and mileage < last,
            },
        )
        car.mileage = mileage
    if booking is not None:
        booking.state = BookingState.ARRIVED
        if booking.car_id is None:
            booking.car_id = car_id
    now = utcnow()
    for model, row_id in ((Client, client.id), (Car, car_id)):
        await session.execute(
            update(model)
            .where(model.id == row_id, model.last_activity_at < now)
            .values(last_activity_at=now)
        )
    await session.flush()
    audit.record(
        session,
        "arrival.create",
        actor=actor,
        entity="document",
        entity_id=doc.id,
        details={
            "client_id": client.id,
            "car_id": car_id,
            "number": doc.number,
            "booking_id": booking.id if booking else None,
            "master_id": master.id,
            "mileage": mileage,
        },
    )
    await outbox.enqueue(
        session,
        Kind.ORDER_ACCEPTED,
        f"order_accepted:{doc.id}",
        client_id=client.id,
        payload={"document_id": doc.id, "number": doc.number},
    )
    return doc


__all__ = [
    "ArrivalProblem",
    "ArrivalRefused",
    "car_client",
    "check_in",
    "in_progress",
    "last_mileage",
    "masters",
    "parse_mileage",
]
