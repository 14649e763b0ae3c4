"""Taking payment and Telegram invoices, on SQLite and PostgreSQL, including two cashiers
paying the same order at the same moment."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from services import ledger, payments
from services.payments import PaymentProblem, PaymentRefused
from storage.db import write_transaction
from storage.models import (
    AuditLog,
    DocState,
    DocType,
    Document,
    Event,
    Payment,
    PaymentMethod,
    Role,
)
from tests.factories import goods, make_car, make_client, make_document, make_staff, work

PREFIX = "ЦОА"
SECRET = "test-secret-for-payloads"


@pytest.fixture
async def shop(session_factory):
    """A client with an open customer order of 1 500,00 ₽ and a cashier, committed."""
    async with session_factory() as session:
        client = await make_client(session, "Иванов Иван")
        car = await make_car(session, client)
        order = await make_document(
            session,
            client,
            DocType.CUSTOMER_ORDER,
            car=car,
            lines=[goods("Амортизатор", price=100_000), goods("Фильтр", price=50_000)],
        )
        cashier = await make_staff(session, "Кассир Катя", Role.CASHIER)
        await session.commit()
        return {"client": client, "car": car, "order": order, "cashier": cashier}


async def _pay(factory, order_id, cashier, amount=None, key="k1", method=PaymentMethod.CASH_DESK):
    async with write_transaction(factory) as session:
        return await payments.take_payment(
            session,
            order_id=order_id,
            amount=amount,
            method=method,
            cashier=cashier,
            idempotency_key=key,
            prefix=PREFIX,
        )


async def _order_debt(factory, order_id):
    async with factory() as session:
        order = await session.get_one(Document, order_id)
        [balance] = [
            b
            for b in await ledger.order_balances(session, order.client_id, open_only=False)
            if b.document.id == order_id
        ]
        return balance.debt


async def _payment_docs(factory, order_id):
    async with factory() as session:
        return list(
            await session.scalars(
                select(Document)
                .where(Document.base_id == order_id, Document.doc_type == DocType.PAYMENT)
                .order_by(Document.id)
            )
        )


async def _audit(factory, action):
    async with factory() as session:
        return list(
            await session.scalars(
                select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
            )
        )


# --- at the cash desk ---------------------------------------------------------------


async def test_the_whole_debt_by_default(session_factory, shop):
    order, cashier = shop["order"], shop["cashier"]
    outcome = await _pay(session_factory, order.id, cashier)
    assert outcome.amount == 150_000
    assert (outcome.debt_before, outcome.debt_after) == (150_000, 0)
    assert outcome.number == "ЦОА0000001"  # payments have their own sequence
    assert not outcome.replayed
    assert await _order_debt(session_factory, order.id) == 0

    [doc] = await _payment_docs(session_factory, order.id)
    assert doc.id == outcome.payment_id
    assert (doc.doc_type, doc.state) == (DocType.PAYMENT, DocState.POSTED)
    assert doc.client_id == shop["client"].id and doc.base_id == order.id
    assert doc.car_id == shop["car"].id
    async with session_factory() as session:
        row = await session.get_one(Payment, doc.id)
        assert (row.method, row.cashier_id, row.idempotency_key) == (
            PaymentMethod.CASH_DESK,
            cashier.id,
            "k1",
        )
    [audit] = await _audit(session_factory, "payment.take")
    assert audit.actor_staff_id == cashier.id and audit.entity_id == doc.id
    assert audit.details["amount"] == 150_000
    assert audit.details["order_id"] == order.id
    assert audit.details["debt_after"] == 0


async def test_partial_payments_then_the_rest(session_factory, shop):
    order, cashier = shop["order"], shop["cashier"]
    first = await _pay(session_factory, order.id, cashier, 40_000, key="a")
    assert (first.debt_before, first.debt_after) == (150_000, 110_000)
    second = await _pay(
        session_factory, order.id, cashier, None, key="b", method=PaymentMethod.CASH_RECEIPT
    )
    assert second.amount == 110_000 and second.method is PaymentMethod.CASH_RECEIPT
    assert [first.number, second.number] == ["ЦОА0000001", "ЦОА0000002"]
    assert await _order_debt(session_factory, order.id) == 0
    with pytest.raises(PaymentRefused) as refused:
        await _pay(session_factory, order.id, cashier, 100, key="c")
    assert refused.value.problem is PaymentProblem.NOTHING_DUE


@pytest.mark.parametrize("amount", [0, -100])
async def test_zero_and_negative_are_refused(session_factory, shop, amount):
    with pytest.raises(PaymentRefused) as refused:
        await _pay(session_factory, shop["order"].id, shop["cashier"], amount)
    assert refused.value.problem is PaymentProblem.NOT_POSITIVE
    assert await _payment_docs(session_factory, shop["order"].id) == []


async def test_more_than_the_debt_is_refused_with_the_debt(session_factory, shop):
    await _pay(session_factory, shop["order"].id, shop["cashier"], 50_000, key="a")
    with pytest.raises(PaymentRefused) as refused:
        await _pay(session_factory, shop["order"].id, shop["cashier"], 100_001, key="b")
    assert refused.value.problem is PaymentProblem.MORE_THAN_DEBT
    assert refused.value.debt == 100_000
    assert "100000" in str(refused.value)


async def test_a_replayed_payment_returns_the_first(session_factory, shop):
    order, cashier = shop["order"], shop["cashier"]
    first = await _pay(session_factory, order.id, cashier, 30_000, key="tap-1")
    again = await _pay(session_factory, order.id, cashier, 30_000, key="tap-1")
    assert again.replayed
    assert (again.payment_id, again.number, again.amount) == (
        first.payment_id,
        first.number,
        first.amount,
    )
    # the whole-debt form of the same request replays too
    assert (await _pay(session_factory, order.id, cashier, None, key="tap-1")).replayed
    assert len(await _payment_docs(session_factory, order.id)) == 1
    assert await _order_debt(session_factory, order.id) == 120_000
    assert len(await _audit(session_factory, "payment.take")) == 1


async def test_a_key_used_for_another_payment_is_refused(session_factory, shop):
    async with session_factory() as session:
        other = await make_document(session, shop["client"], lines=[goods("Масло", price=10_000)])
        await session.commit()
    await _pay(session_factory, shop["order"].id, shop["cashier"], 30_000, key="same")
    with pytest.raises(PaymentRefused) as refused:
        await _pay(session_factory, other.id, shop["cashier"], None, key="same")
    assert refused.value.problem is PaymentProblem.KEY_REUSED
    with pytest.raises(PaymentRefused) as refused:
        await _pay(session_factory, shop["order"].id, shop["cashier"], 1_000, key="same")
    assert refused.value.problem is PaymentProblem.KEY_REUSED


async def test_who_may_take_payments(session_factory, shop):
    async with session_factory() as session:
        master = await make_staff(session, "Мастер", Role.MASTER)
        manager = await make_staff(session, "Менеджер", Role.MANAGER)
        admin = await make_staff(session, "Админ", Role.ADMIN)
        await session.commit()
    async with write_transaction(session_factory) as session:
        with pytest.raises(PaymentRefused) as refused:
            await payments.take_payment(
                session,
                order_id=shop["order"].id,
                amount=100,
                method=PaymentMethod.CASH_DESK,
                cashier=master,
                idempotency_key="m",
                prefix=PREFIX,
            )
        assert refused.value.problem is PaymentProblem.FORBIDDEN
        # the refusal is in the log once the caller commits
    [audit] = await _audit(session_factory, "payment.refused")
    assert audit.actor_staff_id == master.id
    await _pay(session_factory, shop["order"].id, manager, 100, key="mgr")
    await _pay(session_factory, shop["order"].id, admin, 100, key="adm")
    assert len(await _payment_docs(session_factory, shop["order"].id)) == 2


async def test_telegram_is_not_a_cash_desk_method(session_factory, shop):
    with pytest.raises(PaymentRefused) as refused:
        await _pay(
            session_factory, shop["order"].id, shop["cashier"], method=PaymentMethod.TELEGRAM
        )
    assert refused.value.problem is PaymentProblem.BAD_METHOD


async def test_which_orders_accept_payment(session_factory, shop):
    client = shop["client"]
    async with session_factory() as session:
        cancelled = await make_document(
            session, client, state=DocState.CANCELLED, lines=[goods("Свеча", price=30_000)]
        )
        request = await make_document(
            session,
            client,
            DocType.WORK_ORDER,
            state=DocState.REQUEST,
            lines=[work("Диагностика", price=150_000)],
        )
        in_progress = await make_document(
            session,
            client,
            DocType.WORK_ORDER,
            state=DocState.IN_PROGRESS,
            lines=[work("Замена масла", price=150_000)],
        )
        closed = await make_document(
            session,
            client,
            DocType.WORK_ORDER,
            state=DocState.CLOSED,
            lines=[work("Развал-схождение", price=200_000)],
        )
        plan = await make_document(session, client, DocType.REPAIR_PLAN, amount=10_000)
        await session.commit()
    cashier = shop["cashier"]
    for doc, problem in [
        (cancelled, PaymentProblem.ORDER_CANCELLED),
        (request, PaymentProblem.NOT_CHARGED),
        (plan, PaymentProblem.NOT_AN_ORDER),
    ]:
        with pytest.raises(PaymentRefused) as refused:
            await _pay(session_factory, doc.id, cashier, key=f"x{doc.id}")
        assert refused.value.problem is problem
    with pytest.raises(PaymentRefused) as refused:
        await _pay(session_factory, 999_999, cashier, key="none")
    assert refused.value.problem is PaymentProblem.ORDER_NOT_FOUND
    assert (await _pay(session_factory, in_progress.id, cashier, key="wo")).amount == 150_000
    assert (await _pay(session_factory, closed.id, cashier, key="closed")).amount == 200_000


# --- races --------------------------------------------------------------------------


async def _race(factory, order_id, cashiers, keys):
    return await asyncio.gather(
        *(_pay(factory, order_id, c, None, key=k) for c, k in zip(cashiers, keys, strict=True)),
        return_exceptions=True,
    )


async def test_two_cashiers_at_once_never_overpay(session_factory, shop):
    """Several cashiers press "pay the whole debt" on the same order at the same moment,
    each in their own session: exactly one payment goes through."""
    async with session_factory() as session:
        second = await make_staff(session, "Кассир Ольга", Role.CASHIER)
        await session.commit()
    cashiers = [shop["cashier"], second] * 4
    results = await _race(session_factory, shop["order"].id, cashiers, [f"c{i}" for i in range(8)])

    done = [r for r in results if isinstance(r, payments.PaymentOutcome)]
    refused = [r for r in results if isinstance(r, PaymentRefused)]
    assert len(done) == 1, results
    assert len(refused) == 7, results
    assert {r.problem for r in refused} == {PaymentProblem.NOTHING_DUE}
    assert done[0].amount == 150_000
    assert len(await _payment_docs(session_factory, shop["order"].id)) == 1
    assert await _order_debt(session_factory, shop["order"].id) == 0


async def test_a_replay_racing_its_original_makes_one_payment(session_factory, shop):
    cashier = shop["cashier"]
    results = await _race(session_factory, shop["order"].id, [cashier] * 6, ["tap"] * 6)
    assert all(isinstance(r, payments.PaymentOutcome) for r in results), results
    assert len({r.payment_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert len(await _payment_docs(session_factory, shop["order"].id)) == 1


# --- Telegram invoices --------------------------------------------------------------


async def _invoice(factory, order_id, **kwargs):
    async with factory() as session:
        return await payments.invoice_for(session, order_id, secret=SECRET, **kwargs)


async def _pre_checkout(factory, payload, total, currency="RUB"):
    async with factory() as session:
        return await payments.check_pre_checkout(session, payload, total, currency, secret=SECRET)


async def _successful(factory, payload, total, charge_id, currency="RUB"):
    async with write_transaction(factory) as session:
        return await payments.record_telegram_payment(
            session,
            payload,
            total,
            currency,
            charge_id,
            f"provider-{charge_id}",
            secret=SECRET,
            prefix=PREFIX,
            payer_telegram_id=555,
        )


async def test_invoice_for_the_debt(session_factory, shop):
    order = shop["order"]
    draft = await _invoice(session_factory, order.id)
    assert draft.amount_kopecks == 150_000
    assert draft.currency == "RUB"
    assert draft.title == order.number
    assert draft.description == "Амортизатор; Фильтр"
    assert len(draft.payload.encode()) <= 128
    assert payments.read_payload(SECRET, draft.payload) == (order.id, 150_000)
    # a part of the debt
    assert (await _invoice(session_factory, order.id, amount=20_000)).amount_kopecks == 20_000
    # a client asking for their own order gets it, another client's order is not found
    mine = await _invoice(session_factory, order.id, client_id=order.client_id)
    assert mine.payload == draft.payload
    with pytest.raises(PaymentRefused) as refused:
        await _invoice(session_factory, order.id, client_id=order.client_id + 1)
    assert refused.value.problem is PaymentProblem.ORDER_NOT_FOUND


async def test_invoice_outside_telegram_limits_is_refused(session_factory, shop):
    async with session_factory() as session:
        small = await make_document(session, shop["client"], lines=[goods("Шайба", price=5_000)])
        huge = await make_document(
            session, shop["client"], lines=[goods("Двигатель", price=90_000_000)]
        )
        await session.commit()
    for doc in (small, huge):
        with pytest.raises(PaymentRefused) as refused:
            await _invoice(session_factory, doc.id)
        assert refused.value.problem is PaymentProblem.OUT_OF_TELEGRAM_LIMITS
        assert str(payments.TELEGRAM_MIN_RUB) in refused.value.detail


async def test_a_changed_payload_is_not_ours(session_factory, shop):
    draft = await _invoice(session_factory, shop["order"].id)
    _, order_id, _amount, sig = draft.payload.split(".")
    forged = f"p1.{order_id}.100.{sig}"
    assert await _pre_checkout(session_factory, forged, 100) is PaymentProblem.BAD_PAYLOAD
    assert await _pre_checkout(session_factory, "hello", 100) is PaymentProblem.BAD_PAYLOAD
    with pytest.raises(PaymentRefused) as refused:
        payments.read_payload("another-secret", draft.payload)
    assert refused.value.problem is PaymentProblem.BAD_PAYLOAD


async def test_pre_checkout(session_factory, shop):
    draft = await _invoice(session_factory, shop["order"].id)
    assert await _pre_checkout(session_factory, draft.payload, 150_000) is None
    assert await _pre_checkout(session_factory, draft.payload, 150_000, "USD") is (
        PaymentProblem.BAD_CURRENCY
    )
    assert await _pre_checkout(session_factory, draft.payload, 140_000) is (
        PaymentProblem.AMOUNT_MISMATCH
    )


async def test_pre_checkout_for_an_order_paid_meanwhile_is_refused(session_factory, shop):
    draft = await _invoice(session_factory, shop["order"].id)
    await _pay(session_factory, shop["order"].id, shop["cashier"])  # paid at the desk
    assert await _pre_checkout(session_factory, draft.payload, 150_000) is (
        PaymentProblem.NOTHING_DUE
    )


async def test_pre_checkout_for_an_order_partly_paid_or_cancelled_meanwhile(session_factory, shop):
    draft = await _invoice(session_factory, shop["order"].id)
    await _pay(session_factory, shop["order"].id, shop["cashier"], 1_000, key="part")
    assert await _pre_checkout(session_factory, draft.payload, 150_000) is (
        PaymentProblem.MORE_THAN_DEBT
    )
    async with session_factory() as session:
        order = await session.get_one(Document, shop["order"].id)
        order.state = DocState.CANCELLED
        await session.commit()
    assert await _pre_checkout(session_factory, draft.payload, 150_000) is (
        PaymentProblem.ORDER_CANCELLED
    )


async def test_successful_payment_is_recorded_once(session_factory, shop):
    order = shop["order"]
    draft = await _invoice(session_factory, order.id)
    first = await _successful(session_factory, draft.payload, 150_000, "tg-charge-1")
    assert first.method is PaymentMethod.TELEGRAM
    assert (first.amount, first.debt_after, first.overpaid) == (150_000, 0, 0)
    assert not first.flagged and not first.replayed

    again = await _successful(session_factory, draft.payload, 150_000, "tg-charge-1")
    assert again.replayed and again.payment_id == first.payment_id
    assert again.number == first.number

    [doc] = await _payment_docs(session_factory, order.id)
    async with session_factory() as session:
        row = await session.get_one(Payment, doc.id)
        assert row.telegram_charge_id == "tg-charge-1"
        assert row.provider_charge_id == "provider-tg-charge-1"
        assert row.method is PaymentMethod.TELEGRAM and row.cashier_id is None
    [audit] = await _audit(session_factory, "payment.telegram")
    assert audit.actor_telegram_id == 555 and audit.details["amount"] == 150_000
    assert await _order_debt(session_factory, order.id) == 0


async def test_replays_of_a_successful_payment_at_once_record_it_once(session_factory, shop):
    draft = await _invoice(session_factory, shop["order"].id)
    results = await asyncio.gather(
        *(_successful(session_factory, draft.payload, 150_000, "tg-7") for _ in range(5))
    )
    assert len({r.payment_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert len(await _payment_docs(session_factory, shop["order"].id)) == 1


async def test_money_beyond_the_debt_is_recorded_and_flagged(session_factory, shop):
    order = shop["order"]
    draft = await _invoice(session_factory, order.id)
    assert await _pre_checkout(session_factory, draft.payload, 150_000) is None
    # between the pre-checkout and the payment a cashier took 1 000,00 ₽ in cash
    await _pay(session_factory, order.id, shop["cashier"], 100_000, key="cash")
    outcome = await _successful(session_factory, draft.payload, 150_000, "tg-late")

    assert outcome.amount == 150_000  # the money taken, all of it
    assert outcome.overpaid == 100_000 and outcome.flagged
    assert (outcome.debt_before, outcome.debt_after) == (50_000, -100_000)
    assert await _order_debt(session_factory, order.id) == -100_000  # the client is in credit
    async with session_factory() as session:
        [note] = await session.scalars(select(Event).where(Event.client_id == order.client_id))
        assert note.processed_at is None  # new: someone has to refund or move it
        assert note.result == "payment_overpaid"
        assert outcome.number in note.text and "1000.00 RUB over" in note.text
    [flag] = await _audit(session_factory, "payment.overpaid")
    assert flag.details == {"order_id": order.id, "overpaid": 100_000}


async def test_a_payment_for_a_cancelled_order_is_kept_as_credit(session_factory, shop):
    draft = await _invoice(session_factory, shop["order"].id)
    async with session_factory() as session:
        order = await session.get_one(Document, shop["order"].id)
        order.state = DocState.CANCELLED
        await session.commit()
    outcome = await _successful(session_factory, draft.payload, 150_000, "tg-cancelled")
    assert outcome.overpaid == 150_000
    async with session_factory() as session:
        debt = await ledger.client_debt(session, shop["client"].id)
        assert debt == -150_000


async def test_a_successful_payment_we_cannot_book_is_refused(session_factory, shop):
    draft = await _invoice(session_factory, shop["order"].id)
    with pytest.raises(PaymentRefused) as refused:
        await _successful(session_factory, "p1.1.1.AAAAAAAAAAAAAAAAAAAAAA", 100, "tg-x")
    assert refused.value.problem is PaymentProblem.BAD_PAYLOAD
    with pytest.raises(PaymentRefused) as refused:
        await _successful(session_factory, draft.payload, 150_000, "tg-y", currency="EUR")
    assert refused.value.problem is PaymentProblem.BAD_CURRENCY
    async with session_factory() as session:
        count = await session.scalar(select(func.count()).select_from(Payment))
        assert count == 0
