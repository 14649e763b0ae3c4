"""Notifications end to end: the bot in its polling loop, its scheduler delivering the
outbox to the local Bot API, staff pressing the buttons of what they were sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from handlers.callbacks import OpenDocument, WorkOrderState
from services import messaging
from services.messaging import CallOutcome
from storage.models import (
    AuditLog,
    Client,
    DocState,
    DocType,
    Document,
    Event,
    Notification,
    NotificationState,
    Role,
)
from tests.e2e_support import BotHarness, running_bot
from tests.factories import make_car, make_client, make_document, work

MASTER, MANAGER, CASHIER, CLIENT_CHAT = 100, 200, 300, 5001
PROVIDER = "284685063:TEST:notifications"


@pytest.fixture
async def bot(db_url: str) -> AsyncIterator[BotHarness]:
    async with running_bot(
        db_url, notify_in_bot=True, quiet_hours="", payments_provider_token=PROVIDER
    ) as harness:
        yield harness


@pytest.fixture
async def shop(bot: BotHarness) -> dict[str, int]:
    await bot.add_staff(MASTER, "Пётр Мастер", Role.MASTER)
    manager = await bot.add_staff(MANAGER, "Анна Менеджер", Role.MANAGER)
    await bot.add_staff(CASHIER, "Ольга Кассир", Role.CASHIER)
    async with bot.app.session_factory() as s:
        client = await make_client(s, "Иванов Иван", manager=manager)
        client.telegram_chat_id = CLIENT_CHAT
        car = await make_car(s, client, name="Лада Веста", plate="Н123АР77")
        order = await make_document(
            s,
            client,
            DocType.WORK_ORDER,
            state=DocState.IN_PROGRESS,
            car=car,
            lines=[work("Замена ремня ГРМ", price=250_000, norm_hours_milli=2000)],
        )
        customer_order = await make_document(s, client, DocType.CUSTOMER_ORDER)
        await s.commit()
    for chat in (CLIENT_CHAT, MASTER, MANAGER, CASHIER):  # they have all started the bot
        bot.api.known_chat(chat)
    return {"client": client.id, "order": order.id, "customer_order": customer_order.id}


async def settled(bot: BotHarness) -> Notification:
    """The one notification, once the worker has recorded what happened to it."""
    async with asyncio.timeout(10):
        while True:
            async with bot.app.session_factory() as s:
                (row,) = await s.scalars(select(Notification))
            if row.state not in (NotificationState.PENDING, NotificationState.SENDING):
                return row
            await asyncio.sleep(0.05)


async def open_document(bot: BotHarness, user: int, document_id: int):
    menu = await bot.send(user, "/start")
    message_id = menu.sent[0].result["message_id"]
    out = await bot.press(user, OpenDocument(document_id=document_id).pack(), message_id)
    return bot.api.bot_messages(user)[-1], out


async def test_the_master_marks_the_work_done_and_the_client_is_told(bot, shop):
    screen, _ = await open_document(bot, MASTER, shop["order"])
    out = await bot.press(
        MASTER, screen.button("Выполнен: автомобиль готов")["callback_data"], screen.message_id
    )
    assert "Заказ-наряд" in bot.api.bot_messages(MASTER)[-1].plain_text
    toast = out.of("answerCallbackQuery")[0].params.get("text", "")
    assert "выполнен" in toast and "Клиент получит сообщение в боте" in toast
    await bot.api.wait_until(lambda: bool(bot.api.sent(CLIENT_CHAT)), timeout=10)
    (told,) = bot.api.sent(CLIENT_CHAT)
    assert "Лада Веста, Н123АР77 — готово, можно забирать" in told.text
    assert "К оплате: 5\xa0000,00\xa0₽" in told.text
    row = await settled(bot)
    assert (row.state, row.message_id) == (NotificationState.SENT, told.result["message_id"])
    # The client pays from the message: a Telegram invoice for what is due.
    ready = bot.api.bot_messages(CLIENT_CHAT)[-1]
    await bot.press(
        CLIENT_CHAT, ready.button("Оплатить 5\xa0000,00\xa0₽")["callback_data"], ready.message_id
    )
    (invoice,) = bot.api.calls_of("sendInvoice")
    assert int(invoice.params["chat_id"]) == CLIENT_CHAT
    assert sum(int(p["amount"]) for p in invoice.params["prices"]) == 500_000
    async with bot.app.session_factory() as s:
        order = await s.get(Document, shop["order"])
        assert order is not None and order.state is DocState.COMPLETED
    # The next step is on the screen now; a double tap changes nothing and tells no one.
    assert bot.api.bot_messages(MASTER)[-1].button("Автомобиль выдан")
    await bot.press(
        MASTER,
        WorkOrderState(document_id=shop["order"], state="completed").pack(),
        screen.message_id,
    )
    await asyncio.sleep(1.5)  # a second notification would be delivered by now
    assert len(bot.api.sent(CLIENT_CHAT)) == 1


async def test_the_master_is_told_to_call_a_client_the_bot_cannot_reach(bot, shop):
    """Nothing can be sent to a client who turned the bot off: whoever marks the car ready
    is told to call, and nothing goes to the client's chat."""
    async with bot.app.session_factory() as s:
        client = await s.get(Client, shop["client"])
        assert client is not None
        client.notifications_off = True
        await s.commit()
    screen, _ = await open_document(bot, MASTER, shop["order"])
    out = await bot.press(
        MASTER, screen.button("Выполнен: автомобиль готов")["callback_data"], screen.message_id
    )
    toast = out.of("answerCallbackQuery")[0].params.get("text", "")
    assert "Клиент недоступен в боте: позвоните ему" in toast
    assert (await settled(bot)).state is NotificationState.DROPPED
    assert not bot.api.sent(CLIENT_CHAT)


async def test_forged_work_order_presses_are_refused_and_audited(bot, shop):
    menu = await bot.send(CASHIER, "/start")
    message_id = menu.sent[0].result["message_id"]
    cashier = await bot.press(
        CASHIER, WorkOrderState(document_id=shop["order"], state="completed").pack(), message_id
    )
    menu = await bot.send(MASTER, "/start")
    forged_state = await bot.press(
        MASTER,
        WorkOrderState(document_id=shop["order"], state="cancelled").pack(),
        menu.sent[0].result["message_id"],
    )
    not_a_work_order = await bot.press(
        MASTER,
        WorkOrderState(document_id=shop["customer_order"], state="closed").pack(),
        menu.sent[0].result["message_id"],
    )
    for out in (cashier, forged_state, not_a_work_order):
        assert "устарела" in out.of("answerCallbackQuery")[0].params["text"]
    async with bot.app.session_factory() as s:
        order = await s.get(Document, shop["order"])
        other = await s.get(Document, shop["customer_order"])
        assert order is not None and order.state is DocState.IN_PROGRESS
        assert other is not None and other.state is DocState.OPEN
        refused = list(
            await s.scalars(select(AuditLog).where(AuditLog.action == "button.refused"))
        )
        assert len(refused) == 3
        assert await s.scalar(select(Notification.id)) is None


async def test_the_manager_is_alerted_and_marks_the_event_processed(bot, shop):
    async with bot.app.session_factory() as s:
        master = await bot.staff(MASTER)
        assert master is not None
        event = await messaging.log_call(
            s, shop["client"], master, CallOutcome.CALL_BACK, comment="Просит перезвонить"
        )
        await s.commit()
    await bot.api.wait_until(lambda: bool(bot.api.sent(MANAGER)), timeout=10)
    alert = bot.api.bot_messages(MANAGER)[-1]
    assert "Новое событие" in alert.plain_text
    assert "Иванов Иван: Звонок — Просит перезвонить" in alert.plain_text
    assert alert.button("Открыть карточку") and alert.button("Позвонить клиенту")
    await bot.press(MANAGER, alert.button("Обработано")["callback_data"], alert.message_id)
    async with bot.app.session_factory() as s:
        done = await s.get(Event, event.id)
        assert done is not None and done.processed_at is not None
    assert bot.api.sent(MASTER) == []  # the author is not told about their own event


async def test_the_clients_language_follows_their_telegram(bot, shop):
    await bot.send(CLIENT_CHAT, "/start", language_code="en")
    async with bot.app.session_factory() as s:
        client = await s.get(Client, shop["client"])
        assert client is not None and client.locale == "en"
    await bot.send(CLIENT_CHAT, "Когда будет готово?", language_code="ru")
    async with bot.app.session_factory() as s:
        client = await s.get(Client, shop["client"])
        assert client is not None and client.locale == "ru"
