"""What the client and car cards show: the seed's Information tab, the car history, the
works and goods of a document and the «Документы покупателя» tab.

Everything is returned as plain frozen dataclasses built from selected columns, so no ORM
object (and no lazy load) leaves this module. Each function runs a fixed number of queries
whatever the amount of data: a client card is one (the client with every figure and
every list as a scalar subquery), a car card one, a page of documents one (the page with
the total as a window count).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Integer,
    Select,
    bindparam,
    case,
    func,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.ledger import (
    DOCUMENT_ROW_COLUMNS,
    DocumentRow,
    client_debt_of_row,
    document_row,
    open_work_orders_debt_of_row,
)
from storage.db import read
from storage.expr import in_constants
from storage.models import (
    Car,
    CarRole,
    CartLine,
    Client,
    ClientCar,
    ClientKind,
    ClientMaster,
    ClientRelation,
    ContactInfo,
    ContactKind,
    DiscountCard,
    DocState,
    DocType,
    Document,
    DocumentLine,
    Event,
    LineKind,
    PriceType,
    Staff,
)

# The car history lists what was done or planned for the car; payments are money, not
# operations on the car, and live on the client's documents tab.
HISTORY_DOC_TYPES = tuple(t for t in DocType if t is not DocType.PAYMENT)


# --- the client card ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contact:
    kind: ContactKind
    value: str  # phones as E.164 digits (``services.normalize.format_phone`` shows them)
    comment: str | None


@dataclass(frozen=True, slots=True)
class DiscountCardInfo:
    number: str
    discount_bp: int  # 500 = 5.00 %


@dataclass(frozen=True, slots=True)
class ClientCarInfo:
    id: int
    name: str
    plate: str | None
    vin: str | None
    body_number: str | None
    year: int | None
    role: CarRole


@dataclass(frozen=True, slots=True)
class TabCounts:
    """The numbers on the client's tabs."""

    new_events: int  # unprocessed events
    cart: int  # lines in the client's carts, every car and none
    open_orders: int  # customer orders in the open state
    documents: int  # every document of the client


@dataclass(frozen=True, slots=True)
class ClientCard:
    id: int
    name: str
    kind: ClientKind
    relation: ClientRelation
    inn: str | None
    main_phone: str | None  # E.164 digits
    contacts: tuple[Contact, ...]
    last_contact_at: datetime | None  # the latest event; None when there is none
    debt: int  # kopecks, see services.ledger; negative: the client is in credit
    open_work_orders_debt: int
    price_type: str | None
    discount_cards: tuple[DiscountCardInfo, ...]  # active cards only
    masters: tuple[str, ...]
    manager: str | None
    cars: tuple[ClientCarInfo, ...]
    counts: TabCounts


def _count(*conditions: ColumnElement[bool], of: Any) -> ColumnElement[int]:
    return select(func.count()).select_from(of).where(*conditions).scalar_subquery()


def _json_list(
    dialect: str,
    columns: Sequence[Any],
    where: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any],
    *,
    from_: Any,
    joins: Sequence[tuple[Any, ColumnElement[bool]]] = (),
) -> ColumnElement[Any]:
    """The rows of a small list as one JSON array of arrays (a scalar subquery), so that a
    card and its lists come in one statement: each statement costs far more in this process
    than the few rows it reads."""
    if dialect == "postgresql":
        agg = func.json_agg(aggregate_order_by(func.json_build_array(*columns), *order_by))
        stmt = select(agg).select_from(from_)
        for target, on in joins:
            stmt = stmt.join(target, on)
        return type_coerce(stmt.where(*where).correlate(None).scalar_subquery(), JSON)
    inner = select(func.json_array(*columns).label("row")).select_from(from_)
    for target, on in joins:
        inner = inner.join(target, on)
    rows = inner.where(*where).order_by(*order_by).correlate(None).subquery()
    # json(): a JSON value loses its subtype through a subquery and would be quoted.
    return type_coerce(
        select(func.json_group_array(func.json(rows.c.row))).scalar_subquery(), JSON
    )


@functools.cache
def _client_card_query(dialect: str) -> Select[*tuple[Any, ...]]:
    """Built once per dialect: building this statement costs more than running it."""
    client_id = bindparam("client_id", type_=Integer)
    owned = Document.client_id == Client.id
    master = aliased(Staff, name="master")
    return (
        select(
            Client.id,
            Client.name,
            Client.kind,
            Client.relation,
            Client.inn,
            Client.main_phone,
            PriceType.name,
            Staff.name,
            select(func.max(Event.created_at))
            .where(Event.client_id == Client.id)
            .scalar_subquery(),
            _count(Event.client_id == Client.id, Event.processed_at.is_(None), of=Event),
            _count(
                owned,
                Document.doc_type == DocType.CUSTOMER_ORDER,
                Document.state == DocState.OPEN,
                of=Document,
            ),
            _count(owned, of=Document),
            _count(CartLine.client_id == Client.id, of=CartLine),
            client_debt_of_row(),
            open_work_orders_debt_of_row(),
            _json_list(
                dialect,
                [ContactInfo.kind, ContactInfo.value, ContactInfo.comment],
                [ContactInfo.client_id == client_id],
                [ContactInfo.id],
                from_=ContactInfo,
            ),
            _json_list(
                dialect,
                [DiscountCard.number, DiscountCard.discount_bp],
                [DiscountCard.client_id == client_id, DiscountCard.active.is_(True)],
                [DiscountCard.id],
                from_=DiscountCard,
            ),
            _json_list(
                dialect,
                [master.name],
                [ClientMaster.client_id == client_id],
                [master.name, master.id],
                from_=master,
                joins=[(ClientMaster, ClientMaster.staff_id == master.id)],
            ),
            _json_list(
                dialect,
                [
                    Car.id,
                    Car.name,
                    Car.plate,
                    Car.vin,
                    Car.body_number,
                    Car.year,
                    ClientCar.role,
                ],
                [ClientCar.client_id == client_id],
                [Car.last_activity_at.desc(), Car.id.desc()],
                from_=Car,
                joins=[(ClientCar, ClientCar.car_id == Car.id)],
            ),
        )
        .outerjoin(PriceType, PriceType.id == Client.price_type_id)
        .outerjoin(Staff, Staff.id == Client.manager_id)
        .where(Client.id == client_id)
    )


async def client_card(session: AsyncSession, client_id: int) -> ClientCard | None:
    """The Information tab of a client, or None when there is no such client. One
    statement: the client, every figure and every list (contacts, discount cards,
    masters, cars)."""
    query = _client_card_query(session.get_bind().dialect.name)
    head: Any = (await read(session, query, {"client_id": client_id})).one_or_none()
    if head is None:
        return None
    (cid, name, kind, relation, inn, phone, price_type, manager) = head[:8]
    last_contact, new_events, open_orders, documents, cart, debt, wo_debt = head[8:15]
    contacts, cards, masters, cars = (value or [] for value in head[15:])
    return ClientCard(
        id=cid,
        name=name,
        kind=kind,
        relation=relation,
        inn=inn,
        main_phone=phone,
        contacts=tuple(Contact(ContactKind(k), v, c) for k, v, c in contacts),
        last_contact_at=last_contact,
        debt=int(debt),
        open_work_orders_debt=int(wo_debt),
        price_type=price_type,
        discount_cards=tuple(DiscountCardInfo(n, int(bp)) for n, bp in cards),
        masters=tuple(m for (m,) in masters),
        manager=manager,
        cars=tuple(
            ClientCarInfo(i, n, plate, vin, body, year, CarRole(role))
            for i, n, plate, vin, body, year, role in cars
        ),
        counts=TabCounts(
            new_events=int(new_events),
            cart=int(cart),
            open_orders=int(open_orders),
            documents=int(documents),
        ),
    )


# --- the car card -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CarClient:
    id: int
    name: str
    main_phone: str | None
    role: CarRole


@dataclass(frozen=True, slots=True)
class CarCard:
    id: int
    name: str  # «Наименование», e.g. "TOYOTA, COROLLA седан (_E12J_,_E12T_)"
    make: str | None
    model: str | None
    body: str | None
    configuration: str | None
    vin: str | None
    body_number: str | None
    plate: str | None
    year: int | None
    mileage: int | None
    clients: tuple[CarClient, ...]  # owners first, then drivers
    # One page of «История автомобиля» and the total, when asked for with the card.
    history: tuple[list[DocumentRow], int] | None = None

    @property
    def model_title(self) -> str:
        """«Модель» as the card shows it: make, model and body, or the name without them."""
        parts = [p for p in (self.make, self.model, self.body) if p]
        return " ".join(parts) if self.make or self.model else self.name


@functools.cache
def _car_card_query(dialect: str) -> Select[*tuple[Any, ...]]:
    """Built once per dialect, as the client card's."""
    car_id = bindparam("car_id", type_=Integer)
    return select(
        Car.id,
        Car.name,
        Car.make,
        Car.model,
        Car.body,
        Car.configuration,
        Car.vin,
        Car.body_number,
        Car.plate,
        Car.year,
        Car.mileage,
        _json_list(
            dialect,
            [Client.id, Client.name, Client.main_phone, ClientCar.role],
            [ClientCar.car_id == car_id],
            [
                case((ClientCar.role == CarRole.OWNER, 0), else_=1),
                Client.name,
                Client.id,
            ],
            from_=Client,
            joins=[(ClientCar, ClientCar.client_id == Client.id)],
        ),
    ).where(Car.id == car_id)


@functools.cache
def _car_card_with_history_query(dialect: str) -> Select[*tuple[Any, ...]]:
    """The car card and one page of its history: the card's row once per document of the
    page (or once, the document's columns empty, when the page is empty)."""
    card = _car_card_query(dialect).subquery("card")
    page = (
        select(*DOCUMENT_ROW_COLUMNS, func.count().over().label("total"))
        .where(*_history_conditions(bindparam("car_id", type_=Integer)))
        .order_by(Document.date.desc(), Document.id.desc())
        .offset(bindparam("offset", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
        .subquery("page")
    )
    return (
        select(card, page)
        .select_from(card.outerjoin(page, true()))
        .order_by(page.c.date.desc(), page.c.id.desc())
    )


def _history_conditions(car_id: Any) -> list[ColumnElement[bool]]:
    return [Document.car_id == car_id, in_constants(Document.doc_type, HISTORY_DOC_TYPES)]


def _car(row: Any) -> CarCard:
    clients = tuple(CarClient(i, n, phone, CarRole(role)) for i, n, phone, role in row[11] or [])
    cid, name, make, model, body, configuration, vin, body_number, plate, year, mileage = row[:11]
    return CarCard(
        cid, name, make, model, body, configuration, vin, body_number, plate, year, mileage,
        clients=clients,
    )  # fmt: skip


async def car_card(
    session: AsyncSession, car_id: int, *, history: tuple[int, int] | None = None
) -> CarCard | None:
    """The car information of the Information tab, or None when there is no such car. One
    statement: the car and its clients, and with ``history`` (offset, limit) one page of
    its history and the total (``CarCard.history``)."""
    dialect = session.get_bind().dialect.name
    if history is None:
        car: Any = (
            await read(session, _car_card_query(dialect), {"car_id": car_id})
        ).one_or_none()
        return None if car is None else _car(car)
    offset, limit = history
    if offset < 0 or limit < 1:
        raise ValueError(f"bad page: offset={offset}, limit={limit}")
    rows: Any = (
        await read(
            session,
            _car_card_with_history_query(dialect),
            {"car_id": car_id, "offset": offset, "limit": limit},
        )
    ).all()
    if not rows:
        return None
    docs = [document_row(row[12:]) for row in rows if row[12] is not None]
    window = rows[0][-1] if docs else None
    total = await _page_total(session, window, lambda: _history_conditions(car_id), offset)
    return dataclasses.replace(_car(rows[0]), history=(docs, total))


# --- lists of documents -------------------------------------------------------------


async def _page(
    session: AsyncSession, conditions: list[ColumnElement[bool]], offset: int, limit: int
) -> tuple[list[DocumentRow], int]:
    """One page of the documents meeting ``conditions``, newest first, and how many there
    are in all."""
    if offset < 0 or limit < 1:
        raise ValueError(f"bad page: offset={offset}, limit={limit}")
    # The total comes with the page (a window count over every matching row); only a page
    # past the end needs a statement of its own for it.
    rows = (
        await read(
            session,
            select(*DOCUMENT_ROW_COLUMNS, func.count().over())
            .where(*conditions)
            .order_by(Document.date.desc(), Document.id.desc())
            .offset(offset)
            .limit(limit),
        )
    ).all()
    total = await _page_total(session, rows[0][-1] if rows else None, lambda: conditions, offset)
    return [document_row(row) for row in rows], total


async def _page_total(
    session: AsyncSession,
    window: int | None,
    conditions: Callable[[], list[ColumnElement[bool]]],
    offset: int,
) -> int:
    """The total of a page of documents: the window count its rows came with, else (a page
    past the end) a count of its own; an empty first page has none. ``conditions`` are
    built only for that count: building them was a tenth of a car card's Python work."""
    if window is not None:
        return int(window)
    if not offset:
        return 0
    count = select(func.count()).select_from(Document).where(*conditions())
    return int((await read(session, count)).scalar() or 0)


async def car_history(
    session: AsyncSession, car_id: int, *, offset: int = 0, limit: int = 10
) -> tuple[list[DocumentRow], int]:
    """«История автомобиля»: the car's documents (plans, requests, work orders, orders,
    invoices, sales) newest first, one page, and the total."""
    return await _page(session, _history_conditions(car_id), offset, limit)


async def client_documents(
    session: AsyncSession,
    client_id: int,
    *,
    doc_types: Collection[DocType] | None = None,
    organization_id: int | None = None,
    department_id: int | None = None,
    offset: int = 0,
    limit: int = 10,
) -> tuple[list[DocumentRow], int]:
    """«Документы покупателя»: every document of the client newest first, one page, and the
    total. ``doc_types`` None means every type (an empty collection matches nothing)."""
    conditions = [Document.client_id == client_id]
    if doc_types is not None:
        conditions.append(Document.doc_type.in_(sorted(doc_types)))
    if organization_id is not None:
        conditions.append(Document.organization_id == organization_id)
    if department_id is not None:
        conditions.append(Document.department_id == department_id)
    return await _page(session, conditions, offset, limit)


# --- the works and goods of a document ----------------------------------------------


def _times_milli(value: int, milli: int) -> int:
    """``value × milli / 1000`` in whole kopecks, half away from zero."""
    q, r = divmod(abs(value * milli), 1000)
    q += r * 2 >= 1000
    return q if value * milli >= 0 else -q


@dataclass(frozen=True, slots=True)
class WorkLine:
    line_no: int
    item: str  # «Работа»
    article: str | None  # «Артикул»
    qty_milli: int
    norm_hours_milli: int | None  # «Норма времени»; None for a work at a fixed price
    price_per_hour: int | None  # «н/ч»: the price of one norm-hour
    price: int  # one work: norm hours × price per hour, or the fixed price
    amount: int  # «Сумма» as written on the document
    discount_bp: int  # «% ск.»


@dataclass(frozen=True, slots=True)
class GoodsLine:
    line_no: int
    item: str  # «Номенклатура»
    catalogue_number: str | None  # «№ кат.»
    maker: str | None  # «Производитель»
    qty_milli: int
    price: int
    amount: int
    discount_bp: int
    shipped_qty_milli: int


@dataclass(frozen=True, slots=True)
class DocumentView:
    document: DocumentRow
    works: tuple[WorkLine, ...]
    goods: tuple[GoodsLine, ...]

    @property
    def works_amount(self) -> int:
        return sum(w.amount for w in self.works)

    @property
    def goods_amount(self) -> int:
        return sum(g.amount for g in self.goods)


async def document_lines(session: AsyncSession, document_id: int) -> DocumentView | None:
    """The works and goods of one document (the Works and Goods tabs), or None."""
    head = (
        await read(session, select(*DOCUMENT_ROW_COLUMNS).where(Document.id == document_id))
    ).one_or_none()
    if head is None:
        return None
    lines: Any = await read(  # rows of the eleven columns below
        session,
        select(
            DocumentLine.kind,
            DocumentLine.line_no,
            DocumentLine.item,
            DocumentLine.catalogue_number,
            DocumentLine.maker,
            DocumentLine.qty_milli,
            DocumentLine.norm_hours_milli,
            DocumentLine.price,
            DocumentLine.amount,
            DocumentLine.discount_bp,
            DocumentLine.shipped_qty_milli,
        )
        .where(DocumentLine.document_id == document_id)
        .order_by(DocumentLine.line_no, DocumentLine.id),
    )
    works: list[WorkLine] = []
    goods: list[GoodsLine] = []
    for kind, no, item, cat, maker, qty, norm, price, amount, disc, shipped in lines:
        if kind is LineKind.WORK:
            per_hour = price if norm is not None else None
            unit = _times_milli(price, norm) if norm is not None else price
            works.append(WorkLine(no, item, cat, qty, norm, per_hour, unit, amount, disc))
        else:
            goods.append(GoodsLine(no, item, cat, maker, qty, price, amount, disc, shipped))
    return DocumentView(document_row(head), tuple(works), tuple(goods))
