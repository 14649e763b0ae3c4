"""Payments from the Orders tab and through Telegram, end to end through the local Bot API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from handlers.callbacks import DocumentState, PayConfirm
from services import payments
from storage.models import AuditLog, Client, DocState, DocType, Document, Payment, Role
from tests.e2e_support import BotHarness, running_bot
from tests.factories import goods, make_car, make_client, make_document

CASHIER, MASTER, CLIENT_CHAT = 300, 100, 7_000_001
PROVIDER = "284685063:TEST:provider-token"


@pytest.fixture
async def bot(db_url: str) -> AsyncIterator[BotHarness]:
    async with running_bot(db_url, payments_provider_token=PROVIDER) as harness:
        await harness.add_staff(CASHIER, "Ольга Кассир", Role.CASHIER)
        await harness.add_staff(MASTER, "Пётр Мастер", Role.MASTER)
        yield harness


@pytest.fixture
async def order(bot: BotHarness) -> dict[str, int]:
    async with bot.app.session_factory() as s:
        client = await make_client(s, "Иванов Иван", "+7 (945) 123-10-10")
        client.telegram_chat_id = CLIENT_CHAT
        await make_car(s, client)
        doc = await make_document(
            s,
            client,
            DocType.CUSTOMER_ORDER,
            state=DocState.OPEN,
            number="ЦОА0000042",
            lines=[goods("Амортизатор", price=13_000, qty_milli=1000, discount_bp=1000)],
        )
        await s.commit()
        return {"order": doc.id, "client": client.id}


def screen(bot: BotHarness, user: int):
    return bot.api.bot_messages(user)[-1]


def seen(bot: BotHarness, user: int) -> str:
    return (screen(bot, user).plain_text or "").replace("\xa0", " ")


async def payments_of(bot: BotHarness, order_id: int) -> list[tuple[int, str]]:
    async with bot.app.session_factory() as s:
        rows = await s.execute(
            select(Document.amount, Payment.method)
            .join(Payment, Payment.document_id == Document.id)
            .where(Document.base_id == order_id)
            .order_by(Document.id)
        )
        return [(a, str(m)) for a, m in rows]


async def open_order(bot: BotHarness, user: int) -> int:
    await bot.send(user, "/client иванов")
    card = screen(bot, user)
    await bot.press(user, card.button("Заказы")["callback_data"], card.message_id)
    await bot.press(user, screen(bot, user).button("ЦОА0000042")["callback_data"], card.message_id)
    return card.message_id


async def test_cashier_takes_the_whole_debt_once_even_on_a_double_tap(bot, order):
    mid = await open_order(bot, CASHIER)
    assert "Оплата" in str(screen(bot, CASHIER).buttons)
    await bot.press(CASHIER, screen(bot, CASHIER).button("Оплата")["callback_data"], mid)
    assert "К оплате по заказу: 117,00 ₽" in seen(bot, CASHIER)
    take = screen(bot, CASHIER).button("Принять 117,00")["callback_data"]
    first = await bot.press(CASHIER, take, mid)
    second = await bot.press(CASHIER, take, mid)  # the double tap
    assert first.of("answerCallbackQuery")[0].params["text"] == "Оплата записана."
    assert second.of("answerCallbackQuery")[0].params["text"] == "Оплата записана."
    assert await payments_of(bot, order["order"]) == [(11_700, "cash_desk")]
    assert "Долг по заказу теперь: 0,00 ₽" in seen(bot, CASHIER)
    async with bot.app.session_factory() as s:
        audited = await s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "payment.take")
        )
    assert audited == 1


async def test_partial_cash_receipt_order_with_a_typed_amount(bot, order):
    mid = await open_order(bot, CASHIER)
    await bot.press(CASHIER, screen(bot, CASHIER).button("ПКО")["callback_data"], mid)
    out = await bot.send(CASHIER, "200")
    assert out.text.replace("\xa0", " ") == "Это больше долга (117,00 ₽)."
    out = await bot.send(CASHIER, "пятьдесят")
    assert out.text.startswith("Это не сумма")
    out = await bot.send(CASHIER, "50,5")
    assert "Принять 50,50 ₽ по ЦОА0000042 (ПКО)?" in out.text.replace("\xa0", " ")
    confirm = screen(bot, CASHIER)
    await bot.press(CASHIER, confirm.button("Принять")["callback_data"], confirm.message_id)
    assert await payments_of(bot, order["order"]) == [(5_050, "cash_receipt")]
    assert "Долг по заказу теперь: 66,50 ₽" in seen(bot, CASHIER)


async def test_a_master_cannot_pay_even_with_a_forged_button(bot, order):
    await bot.send(MASTER, "/client иванов")
    mid = screen(bot, MASTER).message_id
    assert "Заказы" not in str(screen(bot, MASTER).buttons)
    forged = PayConfirm(order_id=order["order"], method="cash_desk", amount=11_700, nonce="ab")
    out = await bot.press(MASTER, forged.pack(), mid)
    assert out.of("answerCallbackQuery")[0].params["text"] == "Эта кнопка устарела."
    assert await payments_of(bot, order["order"]) == []
    async with bot.app.session_factory() as s:
        reasons = (await s.scalars(select(AuditLog.action))).all()
    assert "payment.refused" in reasons and "button.refused" in reasons


def successful_payment_update(payload: str, amount: int, charge: str) -> dict:
    return {
        "message": {
            "message_id": int(time.time() * 1000) % 1_000_000,
            "date": int(time.time()),
            "chat": {"id": CLIENT_CHAT, "type": "private"},
            "from": {"id": CLIENT_CHAT, "is_bot": False, "first_name": "Иван"},
            "successful_payment": {
                "currency": "RUB",
                "total_amount": amount,
                "invoice_payload": payload,
                "telegram_payment_charge_id": charge,
                "provider_payment_charge_id": "prov-" + charge,
            },
        }
    }


async def test_telegram_invoice_checkout_and_payment_recorded_once(bot, order):
    bot.api.known_chat(CLIENT_CHAT)
    mid = await open_order(bot, CASHIER)
    out = await bot.press(
        CASHIER, screen(bot, CASHIER).button("Отправить счёт в Telegram")["callback_data"], mid
    )
    invoice = bot.api.calls_of("sendInvoice")[-1]
    assert invoice.ok and int(invoice.params["chat_id"]) == CLIENT_CHAT
    assert invoice.params["currency"] == "RUB" and invoice.params["provider_token"] == PROVIDER
    payload = invoice.params["payload"]
    assert out.of("answerCallbackQuery")[0].params["text"].startswith("Счёт на 117,00")

    uid = bot.api.pre_checkout(CLIENT_CHAT, payload, 11_700)
    await bot.handled(uid)
    answer = bot.api.calls_of("answerPreCheckoutQuery")[-1]
    assert answer.params["ok"] in (True, "true")

    for _ in range(2):  # the payment, then the same payment delivered again
        uid = bot.api.enqueue(successful_payment_update(payload, 11_700, "tg-charge-1"))
        await bot.handled(uid)
    assert await payments_of(bot, order["order"]) == [(11_700, "telegram")]
    thanks = [m.plain_text for m in bot.api.bot_messages(CLIENT_CHAT) if m.plain_text]
    assert sum("Оплата получена" in t for t in thanks) == 1

    # paid meanwhile: a second checkout for the same invoice is refused
    uid = bot.api.pre_checkout(CLIENT_CHAT, payload, 11_700)
    await bot.handled(uid)
    answer = bot.api.calls_of("answerPreCheckoutQuery")[-1]
    assert answer.params["ok"] in (False, "false")
    assert answer.params["error_message"] == "Этот заказ уже оплачен."


async def test_a_payment_survives_a_failing_first_try(bot, order, monkeypatch):
    async with bot.app.session_factory() as s:
        draft = await payments.invoice_for(
            s, order["order"], secret=bot.settings.payments_secret()
        )
    real = payments.record_telegram_payment
    calls = {"n": 0}

    async def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("database went away")
        return await real(*args, **kwargs)

    monkeypatch.setattr(payments, "record_telegram_payment", flaky)
    monkeypatch.setattr(type(bot.app.dp), "CRITICAL_RETRIES", (0.01, 0.01))
    bot.api.known_chat(CLIENT_CHAT)
    bot.api.enqueue(successful_payment_update(draft.payload, 11_700, "tg-charge-2"))
    await bot.api.wait_for("sendMessage", lambda c: "Оплата получена" in (c.text or ""))
    assert calls["n"] == 2
    assert await payments_of(bot, order["order"]) == [(11_700, "telegram")]


async def test_unlinked_client_gets_no_invoice_button(bot, order):
    async with bot.app.session_factory() as s:
        client = await s.get(Client, order["client"])
        client.telegram_chat_id = None
        await s.commit()
    await open_order(bot, CASHIER)
    assert "Telegram" not in str(screen(bot, CASHIER).buttons)


async def test_a_payment_that_cannot_be_committed_is_delivered_again(sqlite_url, monkeypatch):
    """The database fails on every try: polling stops without confirming the update, and
    the bot, back again, records it (once)."""
    import asyncio

    from bot.app import CriticalUpdateError, build, serve_polling
    from tests.botapi import FakeBotAPI
    from tests.e2e_support import POLLING_TIMEOUT, TOKEN, make_settings

    async def broken(*args, **kwargs):
        raise ConnectionError("database went away")

    real = payments.record_telegram_payment
    monkeypatch.setattr(payments, "record_telegram_payment", broken)
    async with FakeBotAPI(TOKEN) as api:
        settings = make_settings(sqlite_url, api, payments_provider_token=PROVIDER)
        app = build(settings)
        app.dp.CRITICAL_RETRIES = (0.01, 0.01)
        polling = asyncio.create_task(
            serve_polling(app, handle_signals=False, polling_timeout=POLLING_TIMEOUT)
        )
        try:
            async with app.session_factory() as s:
                client = await make_client(s, "Иванов Иван", "+7 (945) 123-10-10")
                client.telegram_chat_id = CLIENT_CHAT
                doc = await make_document(
                    s,
                    client,
                    DocType.CUSTOMER_ORDER,
                    state=DocState.OPEN,
                    lines=[goods("Фильтр", price=11_700)],
                )
                await s.commit()
                draft = await payments.invoice_for(s, doc.id, secret=settings.payments_secret())
            api.known_chat(CLIENT_CHAT)
            uid = api.enqueue(successful_payment_update(draft.payload, 11_700, "tg-charge-3"))
            with pytest.raises(CriticalUpdateError):
                await asyncio.wait_for(polling, 10)
            assert uid in [u["update_id"] for u in api.pending]
        finally:
            if not polling.done():
                await app.dp.stop_polling()
            await app.close()

        monkeypatch.setattr(payments, "record_telegram_payment", real)
        again = build(settings)
        polling = asyncio.create_task(
            serve_polling(again, handle_signals=False, polling_timeout=POLLING_TIMEOUT)
        )
        try:
            await api.wait_for("sendMessage", lambda c: "Оплата получена" in (c.text or ""))
            async with again.session_factory() as s:
                booked = (
                    await s.scalars(
                        select(Payment.telegram_charge_id).where(
                            Payment.telegram_charge_id.is_not(None)
                        )
                    )
                ).all()
            assert booked == ["tg-charge-3"]
        finally:
            await again.dp.stop_polling()
            await polling
            await again.close()


async def test_two_cashiers_paying_the_same_order_at_once(bot, order):
    """Both asked for the whole debt; both press at the same moment: one payment."""
    import asyncio

    second = CASHIER + 1
    await bot.add_staff(second, "Вера Кассир", Role.CASHIER)
    buttons = []
    for user in (CASHIER, second):
        mid = await open_order(bot, user)
        await bot.press(user, screen(bot, user).button("Оплата")["callback_data"], mid)
        buttons.append((user, screen(bot, user).button("Принять 117,00")["callback_data"], mid))
    updates = [bot.api.callback(user, data, mid) for user, data, mid in buttons]
    await asyncio.gather(*(bot.handled(u, within=15) for u in updates))
    assert await payments_of(bot, order["order"]) == [(11_700, "cash_desk")]
    answers = [c.params.get("text") for c in bot.api.calls_of("answerCallbackQuery")[-2:]]
    assert sorted(answers) == ["Оплата записана.", "По этому заказу нет долга."]


async def test_a_new_document_for_a_gone_client_is_refused_and_audited(bot, order):
    from handlers.callbacks import NewDocument

    manager = 400
    await bot.add_staff(manager, "Анна Менеджер", Role.MANAGER)
    bot.api.known_chat(manager)
    forged = NewDocument(client_id=999_999, kind="order").pack()
    out = await bot.press(manager, forged, 1)
    assert out.of("answerCallbackQuery")[0].params["text"] == "Эта кнопка устарела."
    async with bot.app.session_factory() as s:
        rows = (await s.scalars(select(AuditLog).where(AuditLog.action == "button.refused"))).all()
    assert [(r.actor_telegram_id, r.details["reason"]) for r in rows] == [(manager, "stale")]


async def test_a_manager_closes_reopens_and_cancels_an_order(bot, order):
    """A customer order is closed, reopened and, after a confirmation, cancelled from its
    screen; its amount leaves the client's debt; each change is audited."""
    manager = 400
    await bot.add_staff(manager, "Анна Менеджер", Role.MANAGER)
    bot.api.known_chat(manager)
    mid = await open_order(bot, manager)
    out = await bot.press(manager, screen(bot, manager).button("✔ Закрыть")["callback_data"], mid)
    assert out.of("answerCallbackQuery")[0].params["text"] == (
        "Заказ покупателя ЦОА0000042: закрыт."
    )
    await bot.press(manager, screen(bot, manager).button("↩ Открыть снова")["callback_data"], mid)
    await bot.press(manager, screen(bot, manager).button("✖ Отменить")["callback_data"], mid)
    assert "Отменить: Заказ покупателя ЦОА0000042?" in seen(bot, manager)
    async with bot.app.session_factory() as s:
        doc = await s.get(Document, order["order"])
        assert doc is not None and doc.state is DocState.OPEN  # asked, not done
    await bot.press(manager, screen(bot, manager).button("✖ Да, отменить")["callback_data"], mid)
    assert "Состояние: отменён" in seen(bot, manager)
    async with bot.app.session_factory() as s:
        doc = await s.get(Document, order["order"])
        assert doc is not None and doc.state is DocState.CANCELLED
        changes = (
            await s.scalars(
                select(AuditLog).where(AuditLog.action == "document.state").order_by(AuditLog.id)
            )
        ).all()
    assert [(c.details["before"], c.details["after"]) for c in changes] == [
        ("open", "closed"),
        ("closed", "open"),
        ("open", "cancelled"),
    ]


async def test_an_order_with_shipped_goods_is_not_cancelled(bot, order):
    manager = 400
    await bot.add_staff(manager, "Анна Менеджер", Role.MANAGER)
    bot.api.known_chat(manager)
    mid = await open_order(bot, manager)
    await bot.press(
        manager, screen(bot, manager).button("Реализация готовых товаров")["callback_data"], mid
    )
    await bot.press(
        manager,
        DocumentState(document_id=order["order"], state="cancelled", sure=True).pack(),
        mid,
    )
    [answer] = bot.api.calls_of("answerCallbackQuery")[-1:]
    assert answer.params["text"].startswith("По заказу уже отгружены товары")
    assert answer.params.get("show_alert")
    async with bot.app.session_factory() as s:
        doc = await s.get(Document, order["order"])
        assert doc is not None and doc.state is DocState.OPEN


async def test_a_cashier_cannot_cancel_an_order_even_with_a_forged_button(bot, order):
    mid = await open_order(bot, CASHIER)
    assert "✖ Отменить" not in str(screen(bot, CASHIER).buttons)
    for data in (
        DocumentState(document_id=order["order"], state="cancelled", sure=True).pack(),
        DocumentState(document_id=order["order"], state="paid").pack(),  # no such move
    ):
        out = await bot.press(CASHIER, data, mid)
        assert out.of("answerCallbackQuery")[0].params["text"] == "Эта кнопка устарела."
    async with bot.app.session_factory() as s:
        doc = await s.get(Document, order["order"])
        assert doc is not None and doc.state is DocState.OPEN
        reasons = [
            r.details["reason"]
            for r in await s.scalars(
                select(AuditLog).where(AuditLog.action == "button.refused").order_by(AuditLog.id)
            )
        ]
    assert reasons == ["forbidden", "malformed"]
