"""Repair booking, car arrival and the tire hotel end to end: the real aiogram client in its
polling loop against the local Bot API stand-in, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from handlers.callbacks import BookingList, BookingPick, BookingSlots
from services.filters import ClientFilter, FilterContext
from services.search import SearchService
from storage.models import (
    AuditLog,
    Booking,
    BookingState,
    Client,
    DocState,
    DocType,
    Document,
    Notification,
    Role,
    TireSet,
    TireSetState,
)
from tests.botapi import ChatMessage
from tests.e2e_support import BotHarness, Outcome, running_bot
from tests.factories import MOSCOW, make_car, make_client

MASTER, MANAGER, MANAGER2, CASHIER = 100, 200, 201, 300


@pytest.fixture
async def bot(db_url: str) -> AsyncIterator[BotHarness]:
    async with running_bot(db_url) as harness:
        yield harness


@pytest.fixture
async def shop(bot: BotHarness) -> dict[str, int]:
    await bot.add_staff(MASTER, "Пётр Мастер", Role.MASTER)
    manager = await bot.add_staff(MANAGER, "Анна Менеджер", Role.MANAGER)
    await bot.add_staff(MANAGER2, "Олег Менеджер", Role.MANAGER)
    await bot.add_staff(CASHIER, "Ольга Кассир", Role.CASHIER)
    async with bot.app.session_factory() as s:
        client = await make_client(s, "Иванов Иван", "+7 (945) 123-10-10")
        client.manager_id = manager.id
        car = await make_car(s, client, plate="Н123АР77", mileage=50_000)
        await s.commit()
        return {"client": client.id, "car": car.id}


def screen(bot: BotHarness, user: int) -> ChatMessage:
    return bot.api.bot_messages(user)[-1]


def seen(bot: BotHarness, user: int) -> str:
    return (screen(bot, user).plain_text or "").replace("\xa0", " ")


async def tap(bot: BotHarness, user: int, label: str) -> Outcome:
    current = screen(bot, user)
    return await bot.press(user, current.button(label)["callback_data"], current.message_id)


async def forge(bot: BotHarness, user: int, data: str) -> Outcome:
    return await bot.press(user, data, screen(bot, user).message_id)


def toast(outcome: Outcome) -> dict:
    [answer] = outcome.of("answerCallbackQuery")
    return answer.params


async def refusals(bot: BotHarness) -> list[AuditLog]:
    async with bot.app.session_factory() as s:
        return list(await s.scalars(select(AuditLog).where(AuditLog.action == "button.refused")))


async def _to_slots(bot: BotHarness, user: int) -> None:
    """Client card → bookings → book the car → the second day offered (a whole day)."""
    out = await bot.send(user, "/client Иванов")
    assert "Иванов Иван" in out.text
    await tap(bot, user, "Запись на ремонт")
    assert "Записи на ремонт" in seen(bot, user)
    await tap(bot, user, "Записать Н123АР77")
    assert "Новая запись: выберите день" in seen(bot, user)
    days = [b for row in screen(bot, user).buttons for b in row if b["text"] not in "«»"]
    second = days[1]
    await bot.press(user, second["callback_data"], screen(bot, user).message_id)
    assert "выберите время и пост" in seen(bot, user)


async def test_two_managers_book_one_slot_at_once_one_is_told(bot, shop):
    await _to_slots(bot, MANAGER)
    await _to_slots(bot, MANAGER2)
    first = screen(bot, MANAGER).buttons[0][0]
    assert first["text"] == "09:00 · Пост 1"
    assert screen(bot, MANAGER2).buttons[0][0]["text"] == "09:00 · Пост 1"
    await tap(bot, MANAGER, "09:00 · Пост 1")
    await tap(bot, MANAGER2, "09:00 · Пост 1")
    assert "Отправьте причину" in seen(bot, MANAGER)

    await asyncio.gather(
        tap(bot, MANAGER, "Записать без причины"), tap(bot, MANAGER2, "Записать без причины")
    )
    # Each sees their own answer (the two updates were handled at the same time).
    texts = {user: seen(bot, user) for user in (MANAGER, MANAGER2)}
    won = [u for u, t in texts.items() if "✅ Записан" in t]
    lost = [u for u, t in texts.items() if "только что заняла другая запись" in t]
    assert len(won) == 1 and len(lost) == 1, texts
    assert "09:00 · Пост 1" not in str(screen(bot, lost[0]).buttons)  # the slots again, fresh
    assert "09:00 · Пост 2" in str(screen(bot, lost[0]).buttons)

    async with bot.app.session_factory() as s:
        [booking] = await s.scalars(select(Booking))
        assert (booking.bay, booking.state) == ("Пост 1", BookingState.ACTIVE)
        assert booking.starts_at.astimezone(MOSCOW).hour == 9
        kinds = [n.kind for n in await s.scalars(select(Notification).order_by(Notification.id))]
    # Made by the client's manager: only the client is told; by the other one: both.
    assert kinds in (["booking_confirmed"], ["booking_confirmed", "new_booking"])


async def test_booking_with_a_reason_moved_and_cancelled(bot, shop):
    await _to_slots(bot, MANAGER)
    await tap(bot, MANAGER, "10:00 · Пост 2")
    out = await bot.send(MANAGER, "Замена масла")
    assert "✅ Записан" in out.text and "Замена масла" in out.text
    # Not in the bot: the manager is told to call, not that the client will hear of it.
    assert "Клиент недоступен в боте: позвоните ему" in out.text
    async with bot.app.session_factory() as s:
        client = await s.get(Client, shop["client"])
        assert client is not None
        client.telegram_chat_id = 5001
        await s.commit()
    await tap(bot, MANAGER, "Перенести")
    days = [b for row in screen(bot, MANAGER).buttons for b in row if b["text"] not in "«»"]
    await bot.press(MANAGER, days[2]["callback_data"], screen(bot, MANAGER).message_id)
    await tap(bot, MANAGER, "11:00 · Пост 1")
    assert "✅ Перенесено" in seen(bot, MANAGER)
    assert "Клиент получит сообщение в боте" in seen(bot, MANAGER)
    await tap(bot, MANAGER, "Отменить запись")
    await tap(bot, MANAGER, "Да, отменить")
    assert "Запись отменена" in seen(bot, MANAGER)
    async with bot.app.session_factory() as s:
        [booking] = await s.scalars(select(Booking))
        assert booking.state == BookingState.CANCELLED
        assert booking.starts_at.astimezone(MOSCOW).hour == 11 and booking.reason == "Замена масла"
        kinds = [n.kind for n in await s.scalars(select(Notification).order_by(Notification.id))]
    assert kinds == ["booking_confirmed", "booking_confirmed", "booking_cancelled"]


async def test_forged_past_and_out_of_hours_presses_are_refused(bot, shop):
    await _to_slots(bot, MANAGER)
    client = shop["client"]
    yesterday = (date.today() - timedelta(days=1)).toordinal()
    out = await forge(bot, MANAGER, BookingSlots(client_id=client, day=yesterday).pack())
    assert toast(out)["text"] == "Эта кнопка устарела." and toast(out)["show_alert"]
    tomorrow = (date.today() + timedelta(days=2)).toordinal()
    night = BookingPick(client_id=client, day=tomorrow, minute=23 * 60, bay=0).pack()
    out = await forge(bot, MANAGER, night)
    assert toast(out)["text"] == "Эта кнопка устарела."
    out = await forge(
        bot, MANAGER, BookingPick(client_id=client, day=tomorrow, minute=600, bay=7).pack()
    )
    assert toast(out)["text"] == "Эта кнопка устарела."
    await bot.send(CASHIER, "/client Иванов")
    assert "Запись на ремонт" not in str(screen(bot, CASHIER).buttons)
    out = await forge(bot, CASHIER, BookingList(client_id=client).pack())
    assert toast(out)["text"] == "Эта кнопка устарела."
    reasons = [r.details["reason"] for r in await refusals(bot)]
    assert reasons == ["stale", "stale", "malformed", "forbidden"]
    async with bot.app.session_factory() as s:
        assert list(await s.scalars(select(Booking))) == []


async def test_arrival_with_a_lower_mileage_puts_the_car_on_service(bot, shop):
    out = await bot.send(MASTER, "n123ap")
    assert "Н123АР77" in out.text
    await tap(bot, MASTER, "Машинозаезд")
    assert "Последний записанный пробег: 50 000 км" in seen(bot, MASTER)
    out = await bot.send(MASTER, "40 000")
    assert "меньше последнего записанного (50 000 км)" in seen(bot, MASTER)
    await tap(bot, MASTER, "Да, верно")
    assert "жалобу клиента" in seen(bot, MASTER)
    await bot.send(MASTER, "Стук в подвеске")
    await tap(bot, MASTER, "Пётр Мастер")
    text = seen(bot, MASTER)
    assert "✅ Машина принята: заказ-наряд ЦОА0000001 в работе, мастер Пётр Мастер" in text
    await tap(bot, MASTER, "К автомобилю")
    assert "ЦОА0000001" in seen(bot, MASTER) and "40 000" in seen(bot, MASTER)

    async with bot.app.session_factory() as s:
        [doc] = await s.scalars(select(Document))
        assert (doc.doc_type, doc.state, doc.mileage, doc.comment) == (
            DocType.WORK_ORDER,
            DocState.IN_PROGRESS,
            40_000,
            "Стук в подвеске",
        )
        found = await SearchService().search(
            s,
            "Иванов",
            filters=frozenset({ClientFilter.ON_SERVICE}),
            ctx=FilterContext.for_day(None, MOSCOW),
        )
        assert [c.id for c in found.clients] == [shop["client"]]
        [note] = await s.scalars(select(Notification))
        assert note.key == f"order_accepted:{doc.id}"
    # Not twice: the car is on service.
    await bot.send(MASTER, "n123ap")
    out = await tap(bot, MASTER, "Машинозаезд")
    assert "уже на сервисе" in toast(out)["text"]


async def test_a_tire_set_stored_found_and_issued(bot, shop):
    await bot.send(MASTER, "/client Иванов")
    await tap(bot, MASTER, "Шинный отель")
    await tap(bot, MASTER, "Сдать комплект")
    for typed in ("205/55 R16", "Nokian Hakkapeliitta 10", "6,5", "а-3", "3000"):
        await bot.send(MASTER, typed)
    await bot.send(MASTER, "без порезов")
    form = seen(bot, MASTER)
    assert "Размер: 205/55 R16" in form and "Место: А/3" in form and "3 000,00 ₽" in form
    await tap(bot, MASTER, "Сохранить")
    assert "✅ Комплект на хранении: А/3" in seen(bot, MASTER)

    out = await bot.send(MASTER, "/tires А-3")
    assert "Найдено комплектов: 1" in out.text and "205/55 R16" in out.text
    out = await bot.send(MASTER, "/tires 9451231010")
    assert "Найдено комплектов: 1" in out.text
    await tap(bot, MASTER, "205/55 R16")
    await tap(bot, MASTER, "Выдать клиенту")
    await tap(bot, MASTER, "Да, выдать")
    assert "📤 Комплект выдан." in seen(bot, MASTER)
    async with bot.app.session_factory() as s:
        [row] = await s.scalars(select(TireSet))
        assert (row.state, row.size, row.tread_tenths_mm, row.fee) == (
            TireSetState.ISSUED,
            "205/55 R16",
            65,
            300_000,
        )
        assert row.condition == "без порезов" and row.car_id == shop["car"]
