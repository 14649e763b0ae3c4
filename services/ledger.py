"""Debts: derived from documents and payments in SQL, never stored.

Definitions (all money in kopecks):

- A **charging document** is one the client owes money for: a customer order (заказ
  покупателя) in any state but cancelled, or a work order (заказ-наряд) in progress,
  completed or closed. A work order that is still a request (заявка) is not a charge yet; a
  cancelled one never is. Repair requests, repair plans, invoices and sales never charge: an
  invoice asks for the money of an order and a sale ships the goods of an order, so charging
  them as well would count the same money twice.
- ``charge(doc)`` is ``doc.amount`` for a charging document and 0 for any other.
- ``paid(doc)`` is the sum of the amounts of the posted payment documents (``doc_type``
  payment, ``state`` posted) whose ``base_id`` is ``doc``. The base decides whose debt a
  payment settles, not who paid it (a relative may pay for the client's order).
- ``debt(doc) = charge(doc) - paid(doc)``. Signed on purpose: a negative debt is money the
  shop holds for the client (a document reduced after it was paid, a prepayment on a work
  order that is still a request, a payment on an order that was then cancelled) until it is
  refunded (the payment cancelled) or moved to another document. Clamping each document at
  zero would hide that money and report a debt the client has in fact covered. Payments
  above the debt are refused where payments are taken, so a negative debt only comes from
  a document changed after it was paid.
- The **client's debt** is the sum of ``debt(doc)`` over all the client's documents, i.e.
  the client's charges minus the posted payments based on the client's documents: the net
  balance, negative when the client is in credit.
- The **debt on open work orders** is the sum of ``debt(doc)`` over the client's work
  orders in progress or completed (the car is not issued yet; closed ones are settled
  history as far as the workshop is concerned, though their debt stays in the client's).

A payment without a base document settles nothing here.

Every figure is one SQL statement with aggregates; nothing loops over documents in Python.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.expr import in_constants
from storage.models import Client, DocState, DocType, Document

# The states in which a document is a charge, per type; a type not listed never charges.
CHARGING_STATES: dict[DocType, frozenset[DocState]] = {
    DocType.CUSTOMER_ORDER: frozenset(DocState) - {DocState.CANCELLED},
    DocType.WORK_ORDER: frozenset({DocState.IN_PROGRESS, DocState.COMPLETED, DocState.CLOSED}),
}
OPEN_WORK_ORDER_STATES = frozenset({DocState.IN_PROGRESS, DocState.COMPLETED})


def charges(doc_type: DocType, state: DocState) -> bool:
    """Whether a document of this type in this state is a charge on the client."""
    return state in CHARGING_STATES.get(doc_type, frozenset())


@dataclass(frozen=True, slots=True)
class DocumentRow:
    """One document as the lists show it (orders, car history, customer documents)."""

    id: int
    doc_type: DocType
    number: str
    date: datetime
    state: DocState
    amount: int
    client_id: int
    car_id: int | None
    repair_type: str | None


DOCUMENT_ROW_COLUMNS = (
    Document.id,
    Document.doc_type,
    Document.number,
    Document.date,
    Document.state,
    Document.amount,
    Document.client_id,
    Document.car_id,
    Document.repair_type,
)


def document_row(row: Any) -> DocumentRow:
    """A row selected with :data:`DOCUMENT_ROW_COLUMNS` first."""
    return DocumentRow(*row[: len(DOCUMENT_ROW_COLUMNS)])


@dataclass(frozen=True, slots=True)
class OrderBalance:
    """A customer order on the Orders tab: its total, what was paid and what is owed."""

    document: DocumentRow
    total: int
    paid: int
    debt: int  # negative: overpaid; a cancelled order owes nothing, so its debt is -paid


# The expressions below take ``Document`` or an alias of it.
_Doc = Any


def _money_sum(column: Any) -> ColumnElement[int]:
    # PostgreSQL sums bigint into numeric; cast back so the driver gives an int.
    return cast(func.coalesce(func.sum(column), 0), BigInteger)


def is_charging(doc: _Doc) -> ColumnElement[bool]:
    """SQL for :func:`charges` on ``doc``."""
    return or_(
        *(
            and_(doc.doc_type == doc_type, in_constants(doc.state, sorted(states)))
            for doc_type, states in CHARGING_STATES.items()
        )
    )


def _posted_payment(doc: _Doc) -> ColumnElement[bool]:
    return and_(doc.doc_type == DocType.PAYMENT, doc.state == DocState.POSTED)


def paid_of(doc: _Doc) -> ColumnElement[int]:
    """``paid(doc)`` as a scalar subquery correlated to ``doc`` in the enclosing query."""
    payment = aliased(Document, name="payment_doc")
    return (
        select(_money_sum(payment.amount))
        .where(payment.base_id == doc.id, _posted_payment(payment))
        .scalar_subquery()
    )


def _balance(
    client_id: Any,
    doc_type: DocType | None = None,
    states: Collection[DocState] | None = None,
) -> ColumnElement[int]:
    """Σ debt(doc) over the client's documents, optionally of one type and some states."""
    charged_doc = aliased(Document, name="charged_doc")
    base_doc = aliased(Document, name="base_doc")
    payment = aliased(Document, name="payment_doc")

    def scope(doc: _Doc) -> list[ColumnElement[bool]]:
        conditions = [doc.client_id == client_id]
        if doc_type is not None:
            conditions.append(doc.doc_type == doc_type)
        if states is not None:
            conditions.append(in_constants(doc.state, sorted(states)))
        return conditions

    charged = (
        select(_money_sum(charged_doc.amount))
        .where(*scope(charged_doc), is_charging(charged_doc))
        .scalar_subquery()
    )
    paid = (
        select(_money_sum(payment.amount))
        .join(base_doc, base_doc.id == payment.base_id)
        .where(*scope(base_doc), _posted_payment(payment))
        .scalar_subquery()
    )
    return charged - paid


@functools.cache
def client_debt_of_row() -> ColumnElement[int]:
    """The debt of the ``Client`` row of the enclosing query (correlated), built once:
    building these expressions costs more than running them."""
    return _balance(Client.id)


@functools.cache
def open_work_orders_debt_of_row() -> ColumnElement[int]:
    """The open work orders' debt of the enclosing query's ``Client`` row, built once."""
    return _balance(Client.id, DocType.WORK_ORDER, OPEN_WORK_ORDER_STATES)


def client_debt_expr(client_id: int) -> ColumnElement[int]:
    """The client's debt as an SQL expression, to be selected with other figures."""
    return _balance(client_id)


def open_work_orders_debt_expr(client_id: int) -> ColumnElement[int]:
    """The debt on the client's open work orders as an SQL expression."""
    return _balance(client_id, DocType.WORK_ORDER, OPEN_WORK_ORDER_STATES)


async def client_debt(session: AsyncSession, client_id: int) -> int:
    """The client's debt over all charging documents (negative: the client is in credit)."""
    return int(await session.scalar(select(client_debt_expr(client_id))) or 0)


async def open_work_orders_debt(session: AsyncSession, client_id: int) -> int:
    """The client's debt on work orders in progress or completed (not closed yet)."""
    return int(await session.scalar(select(open_work_orders_debt_expr(client_id))) or 0)


async def order_balances(
    session: AsyncSession,
    client_id: int,
    *,
    car_id: int | None = None,
    open_only: bool = True,
) -> list[OrderBalance]:
    """The client's customer orders with what each costs, what was paid and what is owed,
    newest first: the Orders tab. ``open_only``: only orders in the open state;
    ``car_id``: only the orders for that car (the «По автомобилю» button)."""
    stmt = select(*DOCUMENT_ROW_COLUMNS, paid_of(Document)).where(
        Document.client_id == client_id, Document.doc_type == DocType.CUSTOMER_ORDER
    )
    if car_id is not None:
        stmt = stmt.where(Document.car_id == car_id)
    if open_only:
        stmt = stmt.where(Document.state == DocState.OPEN)
    stmt = stmt.order_by(Document.date.desc(), Document.id.desc())
    balances = []
    for row in await session.execute(stmt):
        doc = document_row(row)
        paid = int(row[-1])
        charge = doc.amount if charges(doc.doc_type, doc.state) else 0
        balances.append(OrderBalance(doc, doc.amount, paid, charge - paid))
    return balances


async def document_balance(session: AsyncSession, document_id: int) -> OrderBalance | None:
    """One document's total, paid and debt (the same rules as the Orders tab)."""
    row = (
        await session.execute(
            select(*DOCUMENT_ROW_COLUMNS, paid_of(Document)).where(Document.id == document_id)
        )
    ).one_or_none()
    if row is None:
        return None
    doc = document_row(row)
    paid = int(row[-1] or 0)
    charge = doc.amount if charges(doc.doc_type, doc.state) else 0
    return OrderBalance(doc, doc.amount, paid, charge - paid)
