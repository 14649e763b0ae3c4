"""New documents, documents on the basis of an order and state changes, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from services import documents, ledger
from services.documents import DocumentProblem, DocumentRefused, LineDraft
from storage.db import write_transaction
from storage.models import (
    AuditLog,
    DocState,
    DocType,
    Document,
    DocumentLine,
    LineKind,
    Role,
)
from tests.factories import goods, make_car, make_client, make_document, make_staff, work

PREFIX = "ЦОА"


@pytest.fixture
async def shop(session_factory):
    async with session_factory() as session:
        manager = await make_staff(session, "Менеджер Мария", Role.MANAGER)
        client = await make_client(session, "Иванов Иван", manager=manager)
        car = await make_car(session, client)
        order = await make_document(
            session,
            client,
            car=car,
            lines=[
                goods("Амортизатор", price=13_000, qty_milli=3_000, discount_bp=1_000),
                goods("Фильтр масляный", price=50_000, catalogue_number="90915", maker="TOYOTA"),
                work("Установка", price=150_000),
            ],
        )
        await session.commit()
        return {"manager": manager, "client": client, "car": car, "order": order}


async def _load(factory, doc_id):
    async with factory() as session:
        return await session.scalar(
            select(Document).where(Document.id == doc_id).options(selectinload(Document.lines))
        )


async def _audit(factory, action):
    async with factory() as session:
        return list(
            await session.scalars(
                select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
            )
        )


async def _sale(factory, order_id, actor, quantities=None):
    async with write_transaction(factory) as session:
        sale = await documents.create_sale(
            session, order_id, actor=actor, prefix=PREFIX, quantities=quantities
        )
        return sale.id


# --- new documents ------------------------------------------------------------------


async def test_new_customer_order_with_lines(session_factory, shop):
    manager, client, car = shop["manager"], shop["client"], shop["car"]
    async with write_transaction(session_factory) as session:
        order = await documents.create_customer_order(
            session,
            client_id=client.id,
            car_id=car.id,
            actor=manager,
            prefix=PREFIX,
            lines=[
                LineDraft(LineKind.GOODS, "Свеча зажигания", 45_000, qty_milli=4_000),
                LineDraft(
                    LineKind.WORK, "Замена свечей", 150_000, norm_hours_milli=500, discount_bp=500
                ),
            ],
            comment="  позвонить, когда придут  ",
        )
        order_id = order.id
    doc = await _load(session_factory, order_id)
    assert (doc.doc_type, doc.state) == (DocType.CUSTOMER_ORDER, DocState.OPEN)
    assert doc.number == "ЦОА0000002"  # the fixture's order was the first
    assert (doc.client_id, doc.car_id) == (client.id, car.id)
    assert (doc.author_id, doc.manager_id) == (manager.id, manager.id)
    assert doc.comment == "позвонить, когда придут"
    assert [(line.line_no, line.item, line.amount) for line in doc.lines] == [
        (1, "Свеча зажигания", 180_000),
        (2, "Замена свечей", 71_250),  # 1 500,00 × 0,5 h − 5 %
    ]
    assert doc.amount == 251_250
    [row] = await _audit(session_factory, "document.create")
    assert row.actor_staff_id == manager.id and row.entity_id == order_id
    assert row.details["number"] == "ЦОА0000002"


async def test_new_repair_request_empty(session_factory, shop):
    async with write_transaction(session_factory) as session:
        request = await documents.create_repair_request(
            session,
            client_id=shop["client"].id,
            car_id=shop["car"].id,
            actor=shop["manager"],
            prefix=PREFIX,
        )
        request_id = request.id
    doc = await _load(session_factory, request_id)
    assert (doc.doc_type, doc.state, doc.amount, doc.lines) == (
        DocType.REPAIR_REQUEST,
        DocState.OPEN,
        0,
        [],
    )
    assert doc.number == "ЦОА0000001"  # its own sequence


async def test_new_documents_are_checked(session_factory, shop):
    async with session_factory() as session:
        stranger = await make_client(session, "Чужой", phone=None)
        foreign_car = await make_car(session, stranger, plate="А001АА77", vin=None)
        master = await make_staff(session, "Мастер", Role.MASTER)
        await session.commit()
    cases = [
        ({"car_id": foreign_car.id}, DocumentProblem.CAR_NOT_LINKED),
        ({"client_id": 999_999}, DocumentProblem.CLIENT_NOT_FOUND),
        ({"lines": [LineDraft(LineKind.GOODS, " ", 100)]}, DocumentProblem.BAD_LINE),
        (
            {"lines": [LineDraft(LineKind.GOODS, "Болт", 100, qty_milli=0)]},
            DocumentProblem.BAD_LINE,
        ),
        ({"lines": [LineDraft(LineKind.GOODS, "Болт", -1)]}, DocumentProblem.BAD_LINE),
        ({"actor": master}, DocumentProblem.FORBIDDEN),
    ]
    for overrides, problem in cases:
        args = {"client_id": shop["client"].id, "actor": shop["manager"], "prefix": PREFIX}
        args.update(overrides)
        async with session_factory() as session:
            with pytest.raises(DocumentRefused) as refused:
                await documents.create_customer_order(session, **args)
            assert refused.value.problem is problem, overrides


# --- sales and invoices -------------------------------------------------------------


async def test_sale_ships_everything_left(session_factory, shop):
    order = shop["order"]
    sale_id = await _sale(session_factory, order.id, shop["manager"])
    sale = await _load(session_factory, sale_id)
    assert (sale.doc_type, sale.state, sale.base_id) == (DocType.SALE, DocState.POSTED, order.id)
    assert (sale.client_id, sale.car_id) == (order.client_id, order.car_id)
    assert sale.number == "ЦОА0000001"
    # goods only, as shipped, priced as in the order
    assert [(x.item, x.qty_milli, x.amount, x.discount_bp) for x in sale.lines] == [
        ("Амортизатор", 3_000, 35_100, 1_000),
        ("Фильтр масляный", 1_000, 50_000, 0),
    ]
    assert sale.lines[1].catalogue_number == "90915" and sale.lines[1].maker == "TOYOTA"
    assert sale.amount == 85_100
    shipped = await _load(session_factory, order.id)
    assert [x.shipped_qty_milli for x in shipped.lines] == [3_000, 1_000, 0]
    [row] = await _audit(session_factory, "document.sale")
    assert row.details["order_id"] == order.id
    # nothing left: a second sale is refused
    with pytest.raises(DocumentRefused) as refused:
        await _sale(session_factory, order.id, shop["manager"])
    assert refused.value.problem is DocumentProblem.NOTHING_TO_SHIP


async def test_partial_sales_ship_only_what_is_left_and_add_up(session_factory, shop):
    order = await _load(session_factory, shop["order"].id)
    shock = order.lines[0]
    first = await _sale(session_factory, order.id, shop["manager"], {shock.id: 1_000})
    async with session_factory() as session:
        ready = await documents.ready_to_ship(session, order.id)
        assert [(line.item, left) for line, left in ready] == [
            ("Амортизатор", 2_000),
            ("Фильтр масляный", 1_000),
        ]
    with pytest.raises(DocumentRefused) as refused:
        await _sale(session_factory, order.id, shop["manager"], {shock.id: 2_001})
    assert refused.value.problem is DocumentProblem.TOO_MUCH
    second = await _sale(session_factory, order.id, shop["manager"])
    a, b = await _load(session_factory, first), await _load(session_factory, second)
    assert [(x.item, x.qty_milli) for x in a.lines] == [("Амортизатор", 1_000)]
    assert [(x.item, x.qty_milli) for x in b.lines] == [
        ("Амортизатор", 2_000),
        ("Фильтр масляный", 1_000),
    ]
    # the sales of a line add up to the line, to the kopeck
    assert a.lines[0].amount + b.lines[0].amount == shock.amount == 35_100
    assert [a.number, b.number] == ["ЦОА0000001", "ЦОА0000002"]


async def test_sales_do_not_change_the_debt(session_factory, shop):
    async with session_factory() as session:
        before = await ledger.client_debt(session, shop["client"].id)
    await _sale(session_factory, shop["order"].id, shop["manager"])
    async with session_factory() as session:
        assert await ledger.client_debt(session, shop["client"].id) == before


async def test_no_sale_from_a_cancelled_or_closed_order_or_a_work_order(session_factory, shop):
    async with session_factory() as session:
        cancelled = await make_document(
            session, shop["client"], state=DocState.CANCELLED, lines=[goods("Болт", price=100)]
        )
        closed = await make_document(
            session, shop["client"], state=DocState.CLOSED, lines=[goods("Болт", price=100)]
        )
        work_order = await make_document(
            session, shop["client"], DocType.WORK_ORDER, lines=[goods("Болт", price=100)]
        )
        await session.commit()
    for doc, problem in [
        (cancelled, DocumentProblem.ORDER_CANCELLED),
        (closed, DocumentProblem.ORDER_NOT_OPEN),
        (work_order, DocumentProblem.NOT_A_CUSTOMER_ORDER),
    ]:
        with pytest.raises(DocumentRefused) as refused:
            await _sale(session_factory, doc.id, shop["manager"])
        assert refused.value.problem is problem


async def test_two_sales_at_once_never_ship_twice(session_factory, shop):
    results = await asyncio.gather(
        *(_sale(session_factory, shop["order"].id, shop["manager"]) for _ in range(5)),
        return_exceptions=True,
    )
    made = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, DocumentRefused)]
    assert len(made) == 1 and len(refused) == 4, results
    assert {r.problem for r in refused} == {DocumentProblem.NOTHING_TO_SHIP}
    order = await _load(session_factory, shop["order"].id)
    assert [x.shipped_qty_milli for x in order.lines] == [3_000, 1_000, 0]


async def test_invoice_for_the_goods_ready_to_ship(session_factory, shop):
    order = await _load(session_factory, shop["order"].id)
    await _sale(session_factory, order.id, shop["manager"], {order.lines[1].id: 1_000})
    async with write_transaction(session_factory) as session:
        invoice = await documents.create_invoice(
            session, order.id, actor=shop["manager"], prefix=PREFIX
        )
        invoice_id = invoice.id
    doc = await _load(session_factory, invoice_id)
    assert (doc.doc_type, doc.base_id, doc.number) == (DocType.INVOICE, order.id, "ЦОА0000001")
    assert [(x.item, x.qty_milli, x.amount) for x in doc.lines] == [("Амортизатор", 3_000, 35_100)]
    # an invoice ships nothing
    after = await _load(session_factory, order.id)
    assert [x.shipped_qty_milli for x in after.lines] == [0, 1_000, 0]


# --- states -------------------------------------------------------------------------


async def _change(factory, doc_id, state, actor):
    async with write_transaction(factory) as session:
        doc = await documents.change_state(session, doc_id, state, actor=actor)
        return doc.state


def test_the_transition_table():
    assert documents.can_transition(DocType.WORK_ORDER, DocState.REQUEST, DocState.IN_PROGRESS)
    assert documents.can_transition(DocType.WORK_ORDER, DocState.COMPLETED, DocState.CLOSED)
    assert not documents.can_transition(DocType.WORK_ORDER, DocState.REQUEST, DocState.CLOSED)
    assert not documents.can_transition(DocType.WORK_ORDER, DocState.CLOSED, DocState.OPEN)
    assert not documents.can_transition(DocType.SALE, DocState.POSTED, DocState.CANCELLED)
    assert not documents.can_transition(DocType.CUSTOMER_ORDER, DocState.CANCELLED, DocState.OPEN)
    # every initial state is a known state of its type
    for doc_type, state in documents.INITIAL_STATES.items():
        assert doc_type in (DocType.SALE,) or state in documents.TRANSITIONS[doc_type]


async def test_work_order_goes_through_its_states(session_factory, shop):
    async with session_factory() as session:
        wo = await make_document(
            session,
            shop["client"],
            DocType.WORK_ORDER,
            state=DocState.REQUEST,
            lines=[work("Диагностика", price=100_000)],
        )
        await session.commit()
    manager = shop["manager"]
    for state in (
        DocState.IN_PROGRESS,
        DocState.COMPLETED,
        DocState.IN_PROGRESS,
        DocState.COMPLETED,
        DocState.CLOSED,
    ):
        assert await _change(session_factory, wo.id, state, manager) is state
    with pytest.raises(DocumentRefused) as refused:
        await _change(session_factory, wo.id, DocState.IN_PROGRESS, manager)
    assert refused.value.problem is DocumentProblem.BAD_TRANSITION
    rows = await _audit(session_factory, "document.state")
    assert [(r.details["before"], r.details["after"]) for r in rows][:2] == [
        ("request", "in_progress"),
        ("in_progress", "completed"),
    ]
    assert len(rows) == 5


async def test_an_order_with_shipped_goods_cannot_be_cancelled(session_factory, shop):
    order = await _load(session_factory, shop["order"].id)
    await _sale(session_factory, order.id, shop["manager"], {order.lines[1].id: 1_000})
    with pytest.raises(DocumentRefused) as refused:
        await _change(session_factory, order.id, DocState.CANCELLED, shop["manager"])
    assert refused.value.problem is DocumentProblem.HAS_SALES
    assert await _change(session_factory, order.id, DocState.CLOSED, shop["manager"]) is (
        DocState.CLOSED
    )


async def test_state_changes_need_the_right_role(session_factory, shop):
    async with session_factory() as session:
        master = await make_staff(session, "Мастер", Role.MASTER)
        cashier = await make_staff(session, "Кассир", Role.CASHIER)
        payment = await make_document(
            session, shop["client"], DocType.PAYMENT, base=shop["order"], amount=1_000
        )
        await session.commit()
    with pytest.raises(DocumentRefused) as refused:
        await _change(session_factory, shop["order"].id, DocState.CLOSED, master)
    assert refused.value.problem is DocumentProblem.FORBIDDEN
    # cancelling a payment (a refund) is the cashier's business, and audited as such
    assert await _change(session_factory, payment.id, DocState.CANCELLED, cashier) is (
        DocState.CANCELLED
    )
    [row] = await _audit(session_factory, "payment.cancel")
    assert row.actor_staff_id == cashier.id and row.details["amount"] == 1_000


async def test_lines_stay_consistent(session_factory, shop):
    """The sale's lines are new rows, the order keeps its own."""
    await _sale(session_factory, shop["order"].id, shop["manager"])
    async with session_factory() as session:
        rows = await session.execute(
            select(DocumentLine.document_id, DocumentLine.line_no).order_by(DocumentLine.id)
        )
        pairs = list(rows)
    assert len(pairs) == 5
    assert len(set(pairs)) == 5
