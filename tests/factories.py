"""Small helpers that put clients, cars, documents, payments and events into a test
database through the ORM. Each flushes (sessions here do not autoflush), so what it made
has its id and is visible to the queries that follow; committing is the test's business.

Money is kopecks, quantities and norm hours thousandths, discounts basis points, as in
``storage.models``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.normalize import parse_phone
from services.numbering import next_number
from storage.models import (
    Car,
    CarRole,
    Client,
    ClientCar,
    ClientKind,
    ClientMaster,
    ContactInfo,
    ContactKind,
    Department,
    DiscountCard,
    DocState,
    DocType,
    Document,
    DocumentLine,
    Event,
    EventKind,
    LineKind,
    Organization,
    Payment,
    PaymentMethod,
    PriceType,
    Role,
    Staff,
)

MOSCOW = ZoneInfo("Europe/Moscow")
PREFIX = "ЦОА"
_telegram_ids = itertools.count(10_000)

DEFAULT_STATES = {
    DocType.CUSTOMER_ORDER: DocState.OPEN,
    DocType.WORK_ORDER: DocState.IN_PROGRESS,
    DocType.REPAIR_REQUEST: DocState.OPEN,
    DocType.REPAIR_PLAN: DocState.POSTED,
}


def moscow(
    year: int, month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0
) -> datetime:
    """A shop-local (Moscow) wall time as an aware UTC datetime."""
    return datetime(year, month, day, hour, minute, second, tzinfo=MOSCOW).astimezone(UTC)


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _discounted(amount: Decimal, discount_bp: int) -> int:
    return _round(amount * (10_000 - discount_bp) / 10_000)


def work(
    item: str,
    *,
    price: int,
    norm_hours_milli: int | None = 1000,
    qty_milli: int = 1000,
    article: str | None = None,
    discount_bp: int = 0,
) -> DocumentLine:
    """A work line; ``price`` is per norm-hour (per work when ``norm_hours_milli`` is None)."""
    hours = Decimal(norm_hours_milli if norm_hours_milli is not None else 1000) / 1000
    amount = Decimal(price) * hours * Decimal(qty_milli) / 1000
    return DocumentLine(
        kind=LineKind.WORK,
        item=item,
        catalogue_number=article,
        qty_milli=qty_milli,
        norm_hours_milli=norm_hours_milli,
        price=price,
        discount_bp=discount_bp,
        amount=_discounted(amount, discount_bp),
    )


def goods(
    item: str,
    *,
    price: int,
    qty_milli: int = 1000,
    catalogue_number: str | None = None,
    maker: str | None = None,
    discount_bp: int = 0,
) -> DocumentLine:
    """A goods line; ``price`` per unit."""
    amount = Decimal(price) * Decimal(qty_milli) / 1000
    return DocumentLine(
        kind=LineKind.GOODS,
        item=item,
        catalogue_number=catalogue_number,
        maker=maker,
        qty_milli=qty_milli,
        price=price,
        discount_bp=discount_bp,
        amount=_discounted(amount, discount_bp),
    )


async def make_staff(
    session: AsyncSession, name: str = "Петров Пётр", role: Role = Role.MASTER
) -> Staff:
    member = Staff(telegram_id=next(_telegram_ids), name=name, role=role)
    session.add(member)
    await session.flush()
    return member


async def make_price_type(
    session: AsyncSession, name: str = "Оптовая", code: str = "wholesale"
) -> PriceType:
    price_type = PriceType(code=code, name=name)
    session.add(price_type)
    await session.flush()
    return price_type


async def make_organization(
    session: AsyncSession, name: str = "Альфа-Авто", departments: Sequence[str] = ()
) -> Organization:
    org = Organization(name=name)
    org.departments = [Department(name=d) for d in departments]
    session.add(org)
    await session.flush()
    return org


async def make_client(
    session: AsyncSession,
    name: str = "Иванов Иван",
    phone: str | None = "+7 (945) 123-10-10",
    *,
    email: str | None = None,
    kind: ClientKind = ClientKind.PERSON,
    inn: str | None = None,
    manager: Staff | None = None,
    masters: Iterable[Staff] = (),
    price_type: PriceType | None = None,
    cards: Iterable[tuple[str, int]] = (),
) -> Client:
    """A client; ``phone`` becomes the main phone and a mobile contact, ``email`` an e-mail
    contact listed first (as in the seed); ``cards`` are (number, discount_bp)."""
    main_phone = parse_phone(phone) if phone else None
    client = Client(
        name=name,
        kind=kind,
        inn=inn,
        main_phone=main_phone,
        manager_id=manager.id if manager else None,
        price_type_id=price_type.id if price_type else None,
    )
    if email:
        client.contacts.append(ContactInfo(kind=ContactKind.EMAIL, value=email))
    if main_phone:
        client.contacts.append(ContactInfo(kind=ContactKind.MOBILE, value=main_phone))
    session.add(client)
    await session.flush()
    session.add_all(ClientMaster(client_id=client.id, staff_id=m.id) for m in masters)
    session.add_all(
        DiscountCard(number=number, client_id=client.id, discount_bp=bp) for number, bp in cards
    )
    await session.flush()
    return client


async def make_car(
    session: AsyncSession,
    owner: Client | None = None,
    *,
    drivers: Iterable[Client] = (),
    name: str = "TOYOTA, COROLLA седан (_E12J_,_E12T_)",
    make: str | None = "TOYOTA",
    model: str | None = "COROLLA",
    body: str | None = "седан (_E12J_,_E12T_)",
    vin: str | None = "NMTBM28E80R058037",
    plate: str | None = "n123ap",
    body_number: str | None = None,
    configuration: str | None = None,
    year: int | None = None,
    mileage: int | None = None,
) -> Car:
    car = Car(
        name=name,
        make=make,
        model=model,
        body=body,
        vin=vin,
        plate=plate,
        body_number=body_number,
        configuration=configuration,
        year=year,
        mileage=mileage,
    )
    session.add(car)
    await session.flush()
    links = [(owner, CarRole.OWNER)] if owner is not None else []
    links += [(d, CarRole.DRIVER) for d in drivers]
    session.add_all(ClientCar(client_id=c.id, car_id=car.id, role=role) for c, role in links)
    await session.flush()
    return car


async def make_document(
    session: AsyncSession,
    client: Client,
    doc_type: DocType = DocType.CUSTOMER_ORDER,
    *,
    state: DocState | None = None,
    car: Car | None = None,
    lines: Sequence[DocumentLine] = (),
    amount: int | None = None,
    number: str | None = None,
    date: datetime | None = None,
    base: Document | None = None,
    organization: Organization | None = None,
    department: Department | None = None,
    repair_type: str | None = None,
) -> Document:
    """A document with ``lines`` (see :func:`work`, :func:`goods`); ``amount`` defaults to
    the sum of the lines, ``number`` to the next ``ЦОА`` number of the type."""
    for no, line in enumerate(lines, start=1):
        line.line_no = no
    doc = Document(
        doc_type=doc_type,
        number=number or await next_number(session, doc_type, PREFIX),
        state=state or DEFAULT_STATES.get(doc_type, DocState.POSTED),
        client_id=client.id,
        car_id=car.id if car else None,
        base_id=base.id if base else None,
        organization_id=organization.id if organization else None,
        department_id=department.id if department else None,
        repair_type=repair_type,
        amount=sum(line.amount for line in lines) if amount is None else amount,
        lines=list(lines),
    )
    if date is not None:
        doc.date = date
    session.add(doc)
    await session.flush()
    return doc


async def make_payment(
    session: AsyncSession,
    base: Document | None,
    amount: int,
    *,
    client: Client | None = None,
    state: DocState = DocState.POSTED,
    method: PaymentMethod = PaymentMethod.CASH_DESK,
    date: datetime | None = None,
) -> Document:
    """A payment document of ``amount`` kopecks for ``base``, paid by ``client`` (by
    default the base's client)."""
    if client is None:
        if base is None:
            raise ValueError("a payment needs a base document or a client")
        client = await session.get_one(Client, base.client_id)
    doc = await make_document(
        session, client, DocType.PAYMENT, state=state, base=base, amount=amount, date=date
    )
    session.add(Payment(document_id=doc.id, method=method))
    await session.flush()
    return doc


async def make_event(
    session: AsyncSession,
    client: Client,
    *,
    car: Car | None = None,
    kind: EventKind = EventKind.CALL,
    text: str = "",
    at: datetime | None = None,
    processed: bool = False,
) -> Event:
    at = at or datetime.now(UTC)
    row = Event(
        client_id=client.id,
        car_id=car.id if car else None,
        kind=kind,
        text=text,
        created_at=at,
        processed_at=at if processed else None,
    )
    session.add(row)
    await session.flush()
    return row


@contextmanager
def count_queries(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SELECT statements run on ``engine`` inside the block (to show a fixed number of
    queries, whatever the amount of data)."""
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
