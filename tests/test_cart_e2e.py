"""The cart and estimates end to end through the local Bot API: staff pick and order, the
client approves an estimate line by line in their own chat."""

from __future__ import annotations

from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from handlers.alerts import RENDERERS, AlertContext
from handlers.callbacks import CartAction, EstimateDecide
from services import cart, pricelist
from storage.models import (
    AuditLog,
    CartLine,
    DocType,
    Document,
    DocumentLine,
    Estimate,
    EstimateState,
    LineKind,
    Notification,
    NotificationState,
    Role,
    Selection,
)
from tests.e2e_support import BotHarness, running_bot
from tests.factories import make_car, make_client, make_price_type

MANAGER, MASTER, CLIENT_CHAT, STRANGER = 400, 100, 7_000_001, 9_999

CTX = AlertContext(tz=ZoneInfo("Europe/Moscow"))


@pytest.fixture
async def bot(sqlite_url: str) -> AsyncIterator[BotHarness]:
    async with running_bot(sqlite_url) as harness:
        await harness.add_staff(MANAGER, "Анна Менеджер", Role.MANAGER)
        await harness.add_staff(MASTER, "Пётр Мастер", Role.MASTER)
        yield harness


@pytest.fixture
async def shop(bot: BotHarness) -> dict[str, int]:
    async with bot.app.session_factory() as s:
        retail = await make_price_type(s, "Розничная", "retail")
        wholesale = await make_price_type(s, "Оптовая", "wholesale")
        filt = await pricelist.save_item(
            s,
            pricelist.ItemDraft(
                LineKind.GOODS,
                "Фильтр масляный",
                {retail.id: 65_000, wholesale.id: 55_250},
                catalogue_number="W 712/75",
                maker="MANN-FILTER",
            ),
        )
        oil = await pricelist.save_item(
            s,
            pricelist.ItemDraft(
                LineKind.WORK,
                "Замена масла в двигателе",
                {retail.id: 240_000, wholesale.id: 200_000},
                catalogue_number="Р-0001",
                norm_hours_milli=500,
            ),
        )
        client = await make_client(
            s, "Иванов Иван", "+7 (945) 123-10-10", price_type=wholesale, cards=[("DK-1", 500)]
        )
        client.telegram_chat_id = CLIENT_CHAT
        car = await make_car(s, client)
        await s.commit()
        return {"client": client.id, "car": car.id, "filter": filt.id, "oil": oil.id}


def screen(bot: BotHarness, chat: int):
    return bot.api.bot_messages(chat)[-1]


def seen(bot: BotHarness, chat: int) -> str:
    return (screen(bot, chat).plain_text or "").replace("\xa0", " ")


async def open_cart(bot: BotHarness, user: int) -> int:
    await bot.send(user, "/client иванов")
    card = screen(bot, user)
    await bot.press(user, card.button("Корзина (")["callback_data"], card.message_id)
    return card.message_id


async def test_cart_becomes_a_customer_order_with_the_discount(bot, shop):
    mid = await open_cart(bot, MANAGER)
    assert "Корзина пуста." in seen(bot, MANAGER)
    assert "Тип цен: Оптовая" in seen(bot, MANAGER)
    await bot.press(MANAGER, screen(bot, MANAGER).button("Прайс-лист")["callback_data"], mid)
    found = await bot.send(MANAGER, "w712-75")
    assert "Найдено в прайс-листе" in found.text
    results = screen(bot, MANAGER)
    pick = results.button("Фильтр масляный")
    assert "552,50" in pick["text"].replace("\xa0", " ")
    out = await bot.press(MANAGER, pick["callback_data"], results.message_id)
    assert out.of("answerCallbackQuery")[0].params["text"] == "Добавлено: Фильтр масляный"
    cart_text = seen(bot, MANAGER)
    assert "Дисконтная карта: DK-1 (5 %)" in cart_text
    assert "Итого: 524,88 ₽" in cart_text  # 552,50 ₽ less 5 %
    assert "→ Заказ-наряд" in str(screen(bot, MANAGER).buttons)
    await bot.press(
        MANAGER,
        screen(bot, MANAGER).button("Заказ покупателя")["callback_data"],
        results.message_id,
    )
    assert "Заказ покупателя ЦОА0000001" in seen(bot, MANAGER)
    async with bot.app.session_factory() as s:
        doc = await s.scalar(select(Document).where(Document.doc_type == DocType.CUSTOMER_ORDER))
        assert (doc.amount, doc.client_id, doc.car_id) == (52_488, shop["client"], shop["car"])
        assert await s.scalar(select(CartLine.id)) is None
        sources = (await s.scalars(select(Selection.source))).all()
        assert sources == ["price_list"]
        actions = set(await s.scalars(select(AuditLog.action)))
        assert {"cart.add", "cart.to_document"} <= actions


async def test_a_master_cannot_order_with_a_forged_button(bot, shop):
    async with bot.app.session_factory() as s:
        manager = await bot.staff(MANAGER)
        await cart.add_from_price_list(
            s, staff=manager, client_id=shop["client"], car_id=shop["car"], item_id=shop["filter"]
        )
        await s.commit()
    mid = await open_cart(bot, MASTER)
    assert "Заказ покупателя" not in str(screen(bot, MASTER).buttons)
    forged = CartAction(client_id=shop["client"], car_id=shop["car"], action="order")
    out = await bot.press(MASTER, forged.pack(), mid)
    assert out.of("answerCallbackQuery")[0].params["text"] == "Эта кнопка устарела."
    async with bot.app.session_factory() as s:
        assert await s.scalar(select(Document.id)) is None
        refused = (
            await s.scalars(select(AuditLog).where(AuditLog.action == "button.refused"))
        ).all()
        assert [r.details["reason"] for r in refused] == ["forbidden"]


async def _client_gets(bot: BotHarness, estimate_id: int, version: int):
    """The bot's own delivery worker sends what was queued: the estimate, to the client."""
    bot.api.known_chat(CLIENT_CHAT)
    assert bot.app.delivery is not None
    await bot.app.delivery.drain(5)
    async with bot.app.session_factory() as s:
        row = await s.scalar(
            select(Notification).where(Notification.key == f"estimate:{estimate_id}:{version}")
        )
        assert row is not None and row.state is NotificationState.SENT
    message = screen(bot, CLIENT_CHAT)
    assert message.message_id == row.message_id
    return message


async def _estimate_sent(bot: BotHarness, shop) -> tuple[int, int]:
    async with bot.app.session_factory() as s:
        manager = await bot.staff(MANAGER)
        for item in ("oil", "filter"):
            await cart.add_from_price_list(
                s, staff=manager, client_id=shop["client"], car_id=shop["car"], item_id=shop[item]
            )
        await s.commit()
    mid = await open_cart(bot, MANAGER)
    await bot.press(MANAGER, screen(bot, MANAGER).button("Калькуляция")["callback_data"], mid)
    assert "Калькуляция №1, версия 1" in seen(bot, MANAGER)
    out = await bot.press(
        MANAGER, screen(bot, MANAGER).button("Отправить клиенту")["callback_data"], mid
    )
    assert out.of("answerCallbackQuery")[0].params["text"] == "Отправлено клиенту."
    assert "ждёт решения клиента" in seen(bot, MANAGER)
    async with bot.app.session_factory() as s:
        estimate = await s.scalar(select(Estimate))
        return estimate.id, mid


async def test_the_client_approves_line_by_line_and_staff_see_the_decision(bot, shop):
    estimate_id, _mid = await _estimate_sent(bot, shop)
    message = await _client_gets(bot, estimate_id, 1)
    text = (message.plain_text or "").replace("\xa0", " ")
    assert "Итого: 1 474,88 ₽" in text and "Согласовано: 0,00 ₽" in text

    # someone else presses the client's button, in the client's chat or their own
    approve_oil = message.button("✅ 1.")["callback_data"]
    for chat in (CLIENT_CHAT, STRANGER):
        out = await bot.press(STRANGER, approve_oil, message.message_id, chat_id=chat)
        answer = out.of("answerCallbackQuery")[0].params
        assert answer["text"] == "Эта кнопка устарела." and not out.of("editMessageText")

    out = await bot.press(CLIENT_CHAT, approve_oil, message.message_id)
    assert out.of("answerCallbackQuery")[0].params["text"] == "Согласовано."
    text = seen(bot, CLIENT_CHAT)
    assert "Согласовано: 950,00 ₽" in text
    assert "✅ 1." not in str(screen(bot, CLIENT_CHAT).buttons)
    out = await bot.press(
        CLIENT_CHAT, screen(bot, CLIENT_CHAT).button("❌ 2")["callback_data"], message.message_id
    )
    assert out.of("answerCallbackQuery")[0].params["text"] == "Отклонено."
    assert "Спасибо!" in seen(bot, CLIENT_CHAT) and not screen(bot, CLIENT_CHAT).buttons

    async with bot.app.session_factory() as s:
        estimate = await s.get(Estimate, estimate_id)
        assert estimate.state is EstimateState.DECIDED
        assert estimate.decided_by_chat_id == CLIENT_CHAT
        plan = await s.get(Document, estimate.plan_id)
        planned = (
            await s.scalars(select(DocumentLine.item).where(DocumentLine.document_id == plan.id))
        ).all()
        assert plan.doc_type is DocType.REPAIR_PLAN and planned == ["Фильтр масляный"]
        told = await s.scalar(select(Notification).where(Notification.kind == "estimate_decided"))
        with bot.app.i18n.context(), bot.app.i18n.use_locale("ru"):
            notice = await RENDERERS["estimate_decided"](s, told, CTX)
        refusals = (
            await s.scalars(select(AuditLog).where(AuditLog.action == "estimate.refused"))
        ).all()
        assert [r.actor_telegram_id for r in refusals] == [STRANGER, STRANGER]
    assert "согласовано 1 из 2" in notice.digest_line.replace("\xa0", " ")

    await bot.send(MANAGER, "/client иванов")
    staff_view = await bot.press(
        MANAGER, notice.markup.inline_keyboard[0][0].callback_data, screen(bot, MANAGER).message_id
    )
    assert staff_view.of("answerCallbackQuery")
    text = seen(bot, MANAGER)
    assert "Решения клиента" in text
    assert "Версия 1: согласовано 1 из 2 на 950,00 ₽, отклонено 1; Иванов Иван в Telegram" in text
    await bot.press(
        MANAGER,
        screen(bot, MANAGER).button("Заказ-наряд из согласованного")["callback_data"],
        screen(bot, MANAGER).message_id,
    )
    buttons = str(screen(bot, MANAGER).buttons)
    assert "Заказ-наряд ЦОА0000001" in buttons and "План ремонта ЦОА0000001" in buttons
    assert "Заказ-наряд из согласованного" not in buttons


async def test_a_press_on_a_superseded_version_is_refused(bot, shop):
    estimate_id, mid = await _estimate_sent(bot, shop)
    message = await _client_gets(bot, estimate_id, 1)
    # the manager takes line 2 out after sending: version 2
    await bot.press(MANAGER, screen(bot, MANAGER).button("✖ 2")["callback_data"], mid)
    assert "Калькуляция №1, версия 2" in seen(bot, MANAGER)
    out = await bot.press(
        CLIENT_CHAT, message.button("✅ 1.")["callback_data"], message.message_id
    )
    assert out.of("answerCallbackQuery")[0].params["text"] == "Эта кнопка устарела."
    async with bot.app.session_factory() as s:
        row = await s.scalar(
            select(Notification).where(Notification.key == f"estimate:{estimate_id}:1")
        )
        with bot.app.i18n.context(), bot.app.i18n.use_locale("ru"):
            assert await RENDERERS["estimate"](s, row, CTX) is None  # superseded: not sent
        estimate = await s.get(Estimate, estimate_id)
        assert (estimate.version, estimate.state) == (2, EstimateState.DRAFT)
    forged = EstimateDecide(estimate_id=estimate_id, version=2, line_id=1, ok=1).pack()
    out = await bot.press(CLIENT_CHAT, forged, message.message_id)  # v2 is not sent yet
    assert out.of("answerCallbackQuery")[0].params["text"] == "Эта кнопка устарела."
