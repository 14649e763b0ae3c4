"""Document numbers and debts, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from services import ledger
from services.numbering import next_number
from storage.db import write_transaction
from storage.models import DocState, DocType
from tests.factories import (
    count_queries,
    goods,
    make_car,
    make_client,
    make_document,
    make_payment,
    moscow,
    work,
)

# --- numbering ----------------------------------------------------------------------


async def test_numbers_follow_per_type_and_prefix(session):
    assert await next_number(session, DocType.REPAIR_PLAN, "ЦОА") == "ЦОА0000001"
    assert await next_number(session, DocType.REPAIR_PLAN, "ЦОА") == "ЦОА0000002"
    assert await next_number(session, DocType.WORK_ORDER, "ЦОА") == "ЦОА0000001"
    assert await next_number(session, DocType.REPAIR_PLAN, "МСК") == "МСК0000001"
    await session.commit()
    assert await next_number(session, DocType.REPAIR_PLAN, "ЦОА") == "ЦОА0000003"


async def test_rolled_back_number_is_given_again(session_factory):
    async with session_factory() as session:
        assert await next_number(session, DocType.SALE, "ЦОА") == "ЦОА0000001"
        await session.rollback()
    async with write_transaction(session_factory) as session:
        assert await next_number(session, DocType.SALE, "ЦОА") == "ЦОА0000001"


async def test_prefix_longer_than_the_column_is_refused(session):
    with pytest.raises(ValueError, match="longer"):
        await next_number(session, DocType.SALE, "ЦОАЦОА")


async def test_concurrent_numbering_gives_distinct_consecutive_numbers(session_factory):
    async def take() -> str:
        async with write_transaction(session_factory) as session:
            return await next_number(session, DocType.WORK_ORDER, "ЦОА")

    numbers = await asyncio.gather(*(take() for _ in range(50)))
    assert sorted(numbers) == [f"ЦОА{i:07d}" for i in range(1, 51)]


# --- debts --------------------------------------------------------------------------


async def test_partial_payments_leave_the_exact_rest(session):
    client = await make_client(session)
    order = await make_document(
        session, client, lines=[goods("Амортизатор", price=123_456_789_01, qty_milli=3000)]
    )
    assert order.amount == 370_370_367_03
    await make_payment(session, order, 10)
    await make_payment(session, order, 20)
    await make_payment(session, order, 100_000_000_01)

    debt = await ledger.client_debt(session, client.id)
    assert debt == 370_370_367_03 - 100_000_000_31
    assert type(debt) is int
    [balance] = await ledger.order_balances(session, client.id)
    assert (balance.total, balance.paid, balance.debt) == (
        370_370_367_03,
        100_000_000_31,
        270_370_366_72,
    )
    assert type(balance.paid) is int
    assert balance.document.number == order.number


async def test_unposted_payment_does_not_count(session):
    client = await make_client(session)
    order = await make_document(session, client, amount=5_000_00)
    await make_payment(session, order, 5_000_00, state=DocState.CANCELLED)
    assert await ledger.client_debt(session, client.id) == 5_000_00
    [balance] = await ledger.order_balances(session, client.id)
    assert balance.paid == 0


async def test_cancelled_order_is_not_charged(session):
    client = await make_client(session)
    await make_document(session, client, amount=1_000_00)
    cancelled = await make_document(session, client, amount=7_000_00, state=DocState.CANCELLED)
    assert await ledger.client_debt(session, client.id) == 1_000_00
    open_orders = await ledger.order_balances(session, client.id)
    assert [b.document.amount for b in open_orders] == [1_000_00]
    every = await ledger.order_balances(session, client.id, open_only=False)
    shown = {b.document.id: b for b in every}
    assert (shown[cancelled.id].total, shown[cancelled.id].debt) == (7_000_00, 0)


async def test_payment_on_a_cancelled_order_is_money_owed_to_the_client(session):
    client = await make_client(session)
    order = await make_document(session, client, amount=2_000_00)
    await make_payment(session, order, 2_000_00)
    order.state = DocState.CANCELLED
    await session.flush()
    assert await ledger.client_debt(session, client.id) == -2_000_00
    [balance] = await ledger.order_balances(session, client.id, open_only=False)
    assert (balance.total, balance.paid, balance.debt) == (2_000_00, 2_000_00, -2_000_00)


async def test_order_reduced_after_payment_shows_overpayment(session):
    client = await make_client(session)
    order = await make_document(session, client, amount=3_000_00)
    await make_payment(session, order, 3_000_00)
    order.amount = 2_500_00
    await session.flush()
    [balance] = await ledger.order_balances(session, client.id)
    assert balance.debt == -500_00
    assert await ledger.client_debt(session, client.id) == -500_00


async def test_work_order_charges_from_in_progress_on(session):
    client = await make_client(session)
    request = await make_document(
        session, client, DocType.WORK_ORDER, state=DocState.REQUEST, amount=9_000_00
    )
    await make_document(session, client, DocType.REPAIR_REQUEST, amount=4_000_00)
    await make_document(session, client, DocType.REPAIR_PLAN, amount=3_000_00)
    await make_document(
        session, client, DocType.WORK_ORDER, state=DocState.CANCELLED, amount=8_000_00
    )
    assert await ledger.client_debt(session, client.id) == 0
    assert await ledger.open_work_orders_debt(session, client.id) == 0

    request.state = DocState.IN_PROGRESS
    await session.flush()
    assert await ledger.client_debt(session, client.id) == 9_000_00
    assert await ledger.open_work_orders_debt(session, client.id) == 9_000_00


async def test_closed_work_order_counts_for_the_client_not_for_open_work_orders(session):
    client = await make_client(session)
    completed = await make_document(
        session,
        client,
        DocType.WORK_ORDER,
        state=DocState.COMPLETED,
        lines=[work("Замена масла", price=1_500_00, norm_hours_milli=500)],
    )
    closed = await make_document(
        session, client, DocType.WORK_ORDER, state=DocState.CLOSED, amount=4_000_00
    )
    await make_payment(session, closed, 1_000_00)
    await make_payment(session, completed, 250_00)

    assert completed.amount == 750_00
    assert await ledger.client_debt(session, client.id) == 750_00 + 4_000_00 - 1_250_00
    assert await ledger.open_work_orders_debt(session, client.id) == 750_00 - 250_00


async def test_invoice_and_sale_of_an_order_are_not_charged_again(session):
    client = await make_client(session)
    order = await make_document(
        session, client, lines=[goods("Амортизатор", price=130_00, discount_bp=1000)]
    )
    await make_document(session, client, DocType.INVOICE, base=order, amount=order.amount)
    await make_document(session, client, DocType.SALE, base=order, amount=order.amount)
    assert order.amount == 117_00
    assert await ledger.client_debt(session, client.id) == 117_00


async def test_payments_do_not_leak_between_clients(session):
    ivanov = await make_client(session, "Иванов Иван", "+7 945 123-10-10")
    petrov = await make_client(session, "Петров Пётр", "+7 916 854-56-78")
    ivanov_order = await make_document(session, ivanov, amount=1_000_00)
    petrov_order = await make_document(session, petrov, amount=500_00)
    await make_payment(session, ivanov_order, 400_00)
    # Petrov pays 100,00 for Ivanov's order: it settles Ivanov's order, not Petrov's.
    await make_payment(session, ivanov_order, 100_00, client=petrov)
    # A payment for nothing settles nothing.
    await make_payment(session, None, 300_00, client=petrov)

    assert await ledger.client_debt(session, ivanov.id) == 500_00
    assert await ledger.client_debt(session, petrov.id) == 500_00
    [balance] = await ledger.order_balances(session, petrov.id)
    assert (balance.document.id, balance.paid, balance.debt) == (petrov_order.id, 0, 500_00)


async def test_a_client_without_documents_owes_nothing(session):
    client = await make_client(session)
    assert await ledger.client_debt(session, client.id) == 0
    assert await ledger.open_work_orders_debt(session, client.id) == 0
    assert await ledger.order_balances(session, client.id) == []
    assert await ledger.client_debt(session, 999_999) == 0


async def test_orders_by_car_newest_first(session):
    client = await make_client(session)
    corolla = await make_car(session, client)
    camry = await make_car(session, client, name="TOYOTA, CAMRY", vin=None, plate="о777оо77")
    old = await make_document(session, client, car=corolla, amount=100, date=moscow(2020, 1, 1))
    new = await make_document(session, client, car=corolla, amount=200, date=moscow(2021, 1, 1))
    other = await make_document(session, client, car=camry, amount=300)
    await make_document(session, client, amount=400)

    by_car = await ledger.order_balances(session, client.id, car_id=corolla.id)
    assert [b.document.id for b in by_car] == [new.id, old.id]
    assert [b.document.car_id for b in by_car] == [corolla.id, corolla.id]
    every = await ledger.order_balances(session, client.id)
    assert len(every) == 4
    assert other.id in {b.document.id for b in every}


async def test_debts_take_one_query_whatever_the_number_of_documents(session, engine):
    client = await make_client(session)
    for i in range(30):
        order = await make_document(session, client, amount=1_000_00 + i)
        await make_payment(session, order, 10_00)
        await make_document(
            session, client, DocType.WORK_ORDER, state=DocState.COMPLETED, amount=5_00
        )
    with count_queries(engine) as queries:
        balances = await ledger.order_balances(session, client.id)
        debt = await ledger.client_debt(session, client.id)
        wo_debt = await ledger.open_work_orders_debt(session, client.id)
    assert len(queries) == 3
    assert len(balances) == 30
    assert debt == sum(1_000_00 + i - 10_00 for i in range(30)) + 30 * 5_00
    assert wo_debt == 30 * 5_00
