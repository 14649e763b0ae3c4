"""Documents of the client: new orders and requests, documents on the basis of an order,
and every change of state through one transition table.

**Numbers.** Every new document is numbered by ``services.numbering.next_number``, one
sequence per document type and prefix (``ЦОА0000001``), in the transaction that writes it.

**States.** :data:`TRANSITIONS` lists, per document type, where each state may go; nothing
else changes a state (:func:`change_state`). A new document starts in
:data:`INITIAL_STATES`. Cancelled and closed work orders, and posted sales, are final: a
sale ships goods, and taking them back is a return, not a cancellation.

**Ready to ship.** A goods line of a customer order is ready to ship for the quantity not
shipped yet, ``qty_milli - shipped_qty_milli`` (the shop's stock is not tracked here; a
reservation or an arrival of goods is the manager's call, made by pressing the button).
Work lines are never shipped. :func:`create_sale` ships what is asked (by default all
that is left): it adds to ``shipped_qty_milli`` of the order's lines and its own lines are
exactly the quantities shipped, priced as in the order. Amounts are split so that the
sales of a line always add up to the line's amount, to the kopeck. A second sale of the
same order ships only what is left and is refused when nothing is; a sale is refused for
an order that is not open (cancelled, closed). The order's row is locked first (``SELECT
... FOR UPDATE`` on PostgreSQL, the write lock of ``BEGIN IMMEDIATE`` on SQLite), so two
sales at the same moment cannot ship the same goods twice.

:func:`create_invoice` asks for the money of the goods ready to ship, on the same lines,
and ships nothing.

Every creation and change of state is audited. Services never commit: the caller does.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services import audit, notify
from services.access import Permission, can
from services.numbering import next_number
from storage.db import begin_immediate
from storage.models import (
    Car,
    Client,
    ClientCar,
    DocState,
    DocType,
    Document,
    DocumentLine,
    LineKind,
    Role,
    Staff,
    utcnow,
)

INITIAL_STATES: dict[DocType, DocState] = {
    DocType.CUSTOMER_ORDER: DocState.OPEN,
    DocType.WORK_ORDER: DocState.REQUEST,
    DocType.REPAIR_REQUEST: DocState.OPEN,
    DocType.REPAIR_PLAN: DocState.POSTED,
    DocType.INVOICE: DocState.POSTED,
    DocType.SALE: DocState.POSTED,
    DocType.PAYMENT: DocState.POSTED,
}

_S = DocState
TRANSITIONS: dict[DocType, dict[DocState, frozenset[DocState]]] = {
    DocType.CUSTOMER_ORDER: {
        _S.OPEN: frozenset({_S.CLOSED, _S.CANCELLED}),
        _S.CLOSED: frozenset({_S.OPEN}),  # reopened
    },
    # Заявка -> В работе -> Выполнен -> Закрыт; a completed order goes back to work when
    # more work turns up before the car is issued.
    DocType.WORK_ORDER: {
        _S.REQUEST: frozenset({_S.IN_PROGRESS, _S.CANCELLED}),
        _S.IN_PROGRESS: frozenset({_S.COMPLETED, _S.CANCELLED}),
        _S.COMPLETED: frozenset({_S.CLOSED, _S.IN_PROGRESS}),
    },
    DocType.REPAIR_REQUEST: {_S.OPEN: frozenset({_S.CLOSED, _S.CANCELLED})},
    DocType.REPAIR_PLAN: {_S.POSTED: frozenset({_S.CANCELLED})},
    DocType.INVOICE: {_S.POSTED: frozenset({_S.CANCELLED})},
    # A payment cancelled is a refund: the money goes back, the debt comes back.
    DocType.PAYMENT: {_S.POSTED: frozenset({_S.CANCELLED})},
    # DocType.SALE: none; a posted sale is final.
}

# Who may change the state of what; creating documents needs DOCUMENTS.
STATE_PERMISSION: dict[DocType, Permission] = {
    DocType.PAYMENT: Permission.PAYMENTS,
    DocType.WORK_ORDER: Permission.WORK_ORDERS,
}

MAX_ITEM = 300
MAX_CATALOGUE_NUMBER = 60
MAX_MAKER = 100


class DocumentProblem(enum.StrEnum):
    FORBIDDEN = "forbidden"
    CLIENT_NOT_FOUND = "client_not_found"
    CAR_NOT_LINKED = "car_not_linked"
    NOT_FOUND = "not_found"
    NOT_A_CUSTOMER_ORDER = "not_a_customer_order"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_NOT_OPEN = "order_not_open"
    NOTHING_TO_SHIP = "nothing_to_ship"
    BAD_LINE = "bad_line"  # detail: which line and why
    TOO_MUCH = "too_much"  # more than is left to ship; detail: line id and what is left
    BAD_TRANSITION = "bad_transition"  # detail: "from -> to"
    HAS_SALES = "has_sales"  # goods of the order were shipped: cannot cancel it


class DocumentRefused(ValueError):
    def __init__(self, problem: DocumentProblem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


def can_transition(doc_type: DocType, current: DocState, new: DocState) -> bool:
    return new in TRANSITIONS.get(DocType(doc_type), {}).get(DocState(current), frozenset())


# --- lines --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineDraft:
    """A line of a new document. Money in kopecks, quantities and norm hours in thousandths,
    discount in basis points. ``price`` is per unit, or per norm-hour for a work with
    ``norm_hours_milli``."""

    kind: LineKind
    item: str
    price: int
    qty_milli: int = 1000
    norm_hours_milli: int | None = None
    discount_bp: int = 0
    catalogue_number: str | None = None
    maker: str | None = None


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def line_amount(draft: LineDraft) -> int:
    """price × qty (× norm hours for works), less the discount, rounded half up."""
    amount = Decimal(draft.price) * Decimal(draft.qty_milli) / 1000
    if draft.kind is LineKind.WORK and draft.norm_hours_milli is not None:
        amount = amount * Decimal(draft.norm_hours_milli) / 1000
    return _round(amount * (10_000 - draft.discount_bp) / 10_000)


def _optional(value: str | None, limit: int, what: str, no: int) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    if len(value) > limit:
        raise DocumentRefused(DocumentProblem.BAD_LINE, f"{no}: {what} over {limit} characters")
    return value or None


def _make_line(no: int, draft: LineDraft) -> DocumentLine:
    kind = LineKind(draft.kind)
    item = " ".join((draft.item or "").split())
    if not item:
        raise DocumentRefused(DocumentProblem.BAD_LINE, f"{no}: no item")
    if len(item) > MAX_ITEM:
        raise DocumentRefused(DocumentProblem.BAD_LINE, f"{no}: item over {MAX_ITEM} characters")
    if draft.qty_milli <= 0:
        raise DocumentRefused(DocumentProblem.BAD_LINE, f"{no}: quantity must be positive")
    if draft.price < 0:
        raise DocumentRefused(DocumentProblem.BAD_LINE, f"{no}: negative price")
    if not 0 <= draft.discount_bp <= 10_000:
        raise DocumentRefused(DocumentProblem.BAD_LINE, f"{no}: discount outside 0-100 %")
    hours = draft.norm_hours_milli if kind is LineKind.WORK else None
    if hours is not None and hours <= 0:
        raise DocumentRefused(DocumentProblem.BAD_LINE, f"{no}: norm hours must be positive")
    return DocumentLine(
        line_no=no,
        kind=kind,
        item=item,
        catalogue_number=_optional(draft.catalogue_number, MAX_CATALOGUE_NUMBER, "number", no),
        maker=_optional(draft.maker, MAX_MAKER, "maker", no),
        qty_milli=draft.qty_milli,
        norm_hours_milli=hours,
        price=draft.price,
        discount_bp=draft.discount_bp,
        amount=line_amount(
            LineDraft(kind, item, draft.price, draft.qty_milli, hours, draft.discount_bp)
        ),
        shipped_qty_milli=0,
    )


def make_lines(drafts: Sequence[LineDraft]) -> list[DocumentLine]:
    """Checked document lines, numbered from 1 (DocumentRefused BAD_LINE on a bad one)."""
    return [_make_line(no, draft) for no, draft in enumerate(drafts, start=1)]


def left_to_ship(line: DocumentLine) -> int:
    """What is still to ship of a line, in thousandths (0 for works)."""
    if LineKind(line.kind) is not LineKind.GOODS:
        return 0
    return max(0, line.qty_milli - (line.shipped_qty_milli or 0))


def _amount_of_shipped(line: DocumentLine, shipped_milli: int) -> int:
    """The part of the line's amount for ``shipped_milli`` of it, cumulative: the parts of
    successive shipments telescope to the whole amount."""
    if shipped_milli >= line.qty_milli:
        return line.amount
    return _round(Decimal(line.amount) * shipped_milli / line.qty_milli)


# --- shared helpers -----------------------------------------------------------------


async def start_write(session: AsyncSession) -> None:
    """Read-then-write: on SQLite take the write lock before the first read."""
    if not session.in_transaction():
        await begin_immediate(session)


async def lock_document(
    session: AsyncSession, document_id: int, *, with_lines: bool = False
) -> Document | None:
    """The document, re-read and locked until the transaction ends (``FOR UPDATE`` on
    PostgreSQL; SQLite has one writer at a time once ``BEGIN IMMEDIATE`` ran)."""
    stmt = (
        select(Document)
        .where(Document.id == document_id)
        .with_for_update(of=Document)
        .execution_options(populate_existing=True)
    )
    if with_lines:
        stmt = stmt.options(selectinload(Document.lines))
    return await session.scalar(stmt)


def _require(actor: Staff | None, permission: Permission = Permission.DOCUMENTS) -> Staff:
    if actor is None or not can(actor, permission):
        raise DocumentRefused(DocumentProblem.FORBIDDEN)
    return actor


async def _touch(session: AsyncSession, client_id: int, car_id: int | None) -> None:
    now = utcnow()
    await session.execute(
        update(Client)
        .where(Client.id == client_id, Client.last_activity_at < now)
        .values(last_activity_at=now)
    )
    if car_id is not None:
        await session.execute(
            update(Car)
            .where(Car.id == car_id, Car.last_activity_at < now)
            .values(last_activity_at=now)
        )


def _summary(doc: Document) -> dict[str, Any]:
    return {
        "doc_type": str(doc.doc_type),
        "number": doc.number,
        "state": str(doc.state),
        "amount": doc.amount,
        "base_id": doc.base_id,
    }


# --- new documents ------------------------------------------------------------------


async def _create(
    session: AsyncSession,
    doc_type: DocType,
    *,
    client_id: int,
    actor: Staff,
    prefix: str,
    car_id: int | None,
    lines: Sequence[LineDraft],
    comment: str | None,
) -> Document:
    _require(actor)
    made = make_lines(lines)
    await start_write(session)
    client = await session.get(Client, client_id)
    if client is None:
        raise DocumentRefused(DocumentProblem.CLIENT_NOT_FOUND, str(client_id))
    if car_id is not None:
        linked = await session.scalar(
            select(ClientCar.car_id).where(
                ClientCar.client_id == client_id, ClientCar.car_id == car_id
            )
        )
        if linked is None:
            raise DocumentRefused(DocumentProblem.CAR_NOT_LINKED, str(car_id))
    manager_id = client.manager_id
    if manager_id is None and Role(actor.role) is Role.MANAGER:
        manager_id = actor.id
    doc = Document(
        doc_type=doc_type,
        number=await next_number(session, doc_type, prefix),
        state=INITIAL_STATES[doc_type],
        client_id=client_id,
        car_id=car_id,
        organization_id=client.organization_id,
        author_id=actor.id,
        manager_id=manager_id,
        comment=(comment or "").strip() or None,
        amount=sum(line.amount for line in made),
        lines=made,
    )
    session.add(doc)
    await session.flush()
    await _touch(session, client_id, car_id)
    audit.record(
        session,
        "document.create",
        actor=actor,
        entity="document",
        entity_id=doc.id,
        details={"client_id": client_id, "car_id": car_id, **_summary(doc)},
    )
    await notify.document_changed(session, doc, None, actor_id=actor.id)
    return doc


async def create_customer_order(
    session: AsyncSession,
    *,
    client_id: int,
    actor: Staff,
    prefix: str,
    car_id: int | None = None,
    lines: Sequence[LineDraft] = (),
    comment: str | None = None,
) -> Document:
    """A new customer order (Заказ покупателя), open, empty or with lines."""
    return await _create(
        session,
        DocType.CUSTOMER_ORDER,
        client_id=client_id,
        actor=actor,
        prefix=prefix,
        car_id=car_id,
        lines=lines,
        comment=comment,
    )


async def create_repair_request(
    session: AsyncSession,
    *,
    client_id: int,
    actor: Staff,
    prefix: str,
    car_id: int | None = None,
    lines: Sequence[LineDraft] = (),
    comment: str | None = None,
) -> Document:
    """A new repair request (Заявка на ремонт), open, empty or with lines."""
    return await _create(
        session,
        DocType.REPAIR_REQUEST,
        client_id=client_id,
        actor=actor,
        prefix=prefix,
        car_id=car_id,
        lines=lines,
        comment=comment,
    )


async def create_work_order(
    session: AsyncSession,
    *,
    client_id: int,
    actor: Staff,
    prefix: str,
    car_id: int | None = None,
    lines: Sequence[LineDraft] = (),
    comment: str | None = None,
) -> Document:
    """A new work order (Заказ-наряд), a request (Заявка) until the car is taken in."""
    return await _create(
        session,
        DocType.WORK_ORDER,
        client_id=client_id,
        actor=actor,
        prefix=prefix,
        car_id=car_id,
        lines=lines,
        comment=comment,
    )


# --- documents on the basis of an order ---------------------------------------------


async def _open_order(session: AsyncSession, order_id: int) -> Document:
    order = await lock_document(session, order_id, with_lines=True)
    if order is None:
        raise DocumentRefused(DocumentProblem.NOT_FOUND, str(order_id))
    if DocType(order.doc_type) is not DocType.CUSTOMER_ORDER:
        raise DocumentRefused(DocumentProblem.NOT_A_CUSTOMER_ORDER, order.number)
    state = DocState(order.state)
    if state is DocState.CANCELLED:
        raise DocumentRefused(DocumentProblem.ORDER_CANCELLED, order.number)
    if state is not DocState.OPEN:
        raise DocumentRefused(DocumentProblem.ORDER_NOT_OPEN, f"{order.number}: {state}")
    return order


def _plan(order: Document, quantities: Mapping[int, int] | None) -> list[tuple[DocumentLine, int]]:
    """(order line, quantity to ship now) for each line that ships something."""
    lines = {line.id: line for line in order.lines}
    if quantities is None:
        wanted = {line.id: left_to_ship(line) for line in order.lines}
    else:
        wanted = dict(quantities)
        for line_id, qty in wanted.items():
            line = lines.get(line_id)
            if line is None or LineKind(line.kind) is not LineKind.GOODS:
                raise DocumentRefused(
                    DocumentProblem.BAD_LINE, f"{line_id}: not goods of the order"
                )
            if qty < 0:
                raise DocumentRefused(DocumentProblem.BAD_LINE, f"{line_id}: negative quantity")
            if qty > left_to_ship(line):
                raise DocumentRefused(
                    DocumentProblem.TOO_MUCH, f"{line_id}: {left_to_ship(line)} left"
                )
    plan = [(lines[i], q) for i, q in wanted.items() if q > 0]
    plan.sort(key=lambda pair: pair[0].line_no)
    if not plan:
        raise DocumentRefused(DocumentProblem.NOTHING_TO_SHIP, order.number)
    return plan


def _based_lines(plan: list[tuple[DocumentLine, int]]) -> list[DocumentLine]:
    made = []
    for no, (line, qty) in enumerate(plan, start=1):
        shipped = line.shipped_qty_milli or 0
        amount = _amount_of_shipped(line, shipped + qty) - _amount_of_shipped(line, shipped)
        made.append(
            DocumentLine(
                line_no=no,
                kind=LineKind.GOODS,
                item=line.item,
                catalogue_number=line.catalogue_number,
                maker=line.maker,
                qty_milli=qty,
                norm_hours_milli=None,
                price=line.price,
                discount_bp=line.discount_bp,
                amount=amount,
                shipped_qty_milli=0,
            )
        )
    return made


async def _based_on(
    session: AsyncSession,
    order: Document,
    doc_type: DocType,
    lines: list[DocumentLine],
    *,
    actor: Staff,
    prefix: str,
) -> Document:
    doc = Document(
        doc_type=doc_type,
        number=await next_number(session, doc_type, prefix),
        state=INITIAL_STATES[doc_type],
        client_id=order.client_id,
        car_id=order.car_id,
        organization_id=order.organization_id,
        department_id=order.department_id,
        author_id=actor.id,
        manager_id=order.manager_id,
        base_id=order.id,
        amount=sum(line.amount for line in lines),
        lines=lines,
    )
    session.add(doc)
    await session.flush()
    await _touch(session, order.client_id, order.car_id)
    return doc


async def ready_to_ship(session: AsyncSession, order_id: int) -> list[tuple[DocumentLine, int]]:
    """The order's goods lines with something left to ship, and how much (thousandths)."""
    lines = await session.scalars(
        select(DocumentLine)
        .where(DocumentLine.document_id == order_id, DocumentLine.kind == LineKind.GOODS)
        .order_by(DocumentLine.line_no)
        .execution_options(populate_existing=True)
    )
    return [(line, left) for line in lines if (left := left_to_ship(line)) > 0]


async def create_sale(
    session: AsyncSession,
    order_id: int,
    *,
    actor: Staff,
    prefix: str,
    quantities: Mapping[int, int] | None = None,
) -> Document:
    """A sale (Реализация товаров) on the basis of an open customer order: ships
    ``quantities`` (order line id -> thousandths), by default everything left to ship."""
    _require(actor)
    await start_write(session)
    order = await _open_order(session, order_id)
    plan = _plan(order, quantities)
    lines = _based_lines(plan)
    for line, qty in plan:
        line.shipped_qty_milli = (line.shipped_qty_milli or 0) + qty
    sale = await _based_on(session, order, DocType.SALE, lines, actor=actor, prefix=prefix)
    audit.record(
        session,
        "document.sale",
        actor=actor,
        entity="document",
        entity_id=sale.id,
        details={
            "order_id": order.id,
            "order_number": order.number,
            "shipped": {str(line.id): qty for line, qty in plan},
            **_summary(sale),
        },
    )
    return sale


async def create_invoice(
    session: AsyncSession, order_id: int, *, actor: Staff, prefix: str
) -> Document:
    """An invoice (Счет на оплату) on the basis of an open customer order, for the goods
    ready to ship; ships nothing."""
    _require(actor)
    await start_write(session)
    order = await _open_order(session, order_id)
    lines = _based_lines(_plan(order, None))
    invoice = await _based_on(session, order, DocType.INVOICE, lines, actor=actor, prefix=prefix)
    audit.record(
        session,
        "document.invoice",
        actor=actor,
        entity="document",
        entity_id=invoice.id,
        details={"order_id": order.id, "order_number": order.number, **_summary(invoice)},
    )
    return invoice


# --- states -------------------------------------------------------------------------


async def change_state(
    session: AsyncSession, document_id: int, new_state: DocState, *, actor: Staff
) -> Document:
    """Moves a document to ``new_state`` if :data:`TRANSITIONS` allows it; the same state
    again is a no-op. A customer order with shipped goods cannot be cancelled."""
    new_state = DocState(new_state)
    await start_write(session)
    doc = await lock_document(session, document_id, with_lines=True)
    if doc is None:
        raise DocumentRefused(DocumentProblem.NOT_FOUND, str(document_id))
    doc_type = DocType(doc.doc_type)
    _require(actor, STATE_PERMISSION.get(doc_type, Permission.DOCUMENTS))
    old_state = DocState(doc.state)
    if old_state is new_state:
        return doc
    if not can_transition(doc_type, old_state, new_state):
        raise DocumentRefused(DocumentProblem.BAD_TRANSITION, f"{old_state} -> {new_state}")
    if (
        doc_type is DocType.CUSTOMER_ORDER
        and new_state is DocState.CANCELLED
        and any(line.shipped_qty_milli for line in doc.lines)
    ):
        raise DocumentRefused(DocumentProblem.HAS_SALES, doc.number)
    doc.state = new_state
    await session.flush()
    audit.record(
        session,
        "payment.cancel" if doc_type is DocType.PAYMENT else "document.state",
        actor=actor,
        entity="document",
        entity_id=doc.id,
        details={
            "client_id": doc.client_id,
            "number": doc.number,
            "before": old_state.value,
            "after": new_state.value,
            "amount": doc.amount,
        },
    )
    await notify.document_changed(session, doc, old_state, actor_id=actor.id)
    return doc


__all__ = [
    "INITIAL_STATES",
    "TRANSITIONS",
    "DocumentProblem",
    "DocumentRefused",
    "LineDraft",
    "can_transition",
    "change_state",
    "create_customer_order",
    "create_invoice",
    "create_repair_request",
    "create_sale",
    "create_work_order",
    "left_to_ship",
    "line_amount",
    "lock_document",
    "make_lines",
    "ready_to_ship",
    "start_write",
]
