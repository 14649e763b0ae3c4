"""The client's side end to end through the local Bot API: linking by phone, by a
manager's decision and by invite link; the client's menu, /stop and /start, messages to
the shop, and paying an order with a Telegram invoice."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from handlers.callbacks import ClientOrder, ClientPay, OpenClient
from storage.models import (
    AuditLog,
    Client,
    Consent,
    DocState,
    DocType,
    Document,
    Event,
    LinkRequest,
    Payment,
    Role,
)
from tests.e2e_support import BotHarness, running_bot
from tests.factories import goods, make_car, make_client, make_document

MANAGER, OTHER_MANAGER, MASTER = 200, 201, 100
CLIENT, OTHER_USER = 7_000_001, 7_000_002
PHONE = "+7 (945) 123-10-10"
PROVIDER = "284685063:TEST:provider-token"
OUT_OF_DATE = "Эта кнопка устарела."


@pytest.fixture
async def bot(sqlite_url: str) -> AsyncIterator[BotHarness]:
    async with running_bot(sqlite_url, payments_provider_token=PROVIDER) as harness:
        await harness.add_staff(MANAGER, "Мария Менеджер", Role.MANAGER)
        await harness.add_staff(OTHER_MANAGER, "Ольга Менеджер", Role.MANAGER)
        await harness.add_staff(MASTER, "Пётр Мастер", Role.MASTER)
        yield harness


@pytest.fixture
async def shop(bot: BotHarness) -> dict[str, int]:
    """Иванов (phone PHONE): a car on service, an open order with a debt. Петров: his own
    car and order, which Иванов must never see."""
    async with bot.app.session_factory() as s:
        ivanov = await make_client(s, "Иванов Иван", PHONE)
        petrov = await make_client(s, "Петров Пётр", "+7 (945) 777-77-77")
        corolla = await make_car(s, ivanov, name="TOYOTA COROLLA", plate="a111aa77")
        bmw = await make_car(s, petrov, name="BMW X5", plate="e444ee77", vin=None)
        work = await make_document(
            s,
            ivanov,
            DocType.WORK_ORDER,
            state=DocState.IN_PROGRESS,
            car=corolla,
            number="ЦОА0000010",
            lines=[goods("Замена масла", price=250_000)],
        )
        order = await make_document(
            s,
            ivanov,
            DocType.CUSTOMER_ORDER,
            state=DocState.OPEN,
            number="ЦОА0000042",
            lines=[goods("Амортизатор", price=13_000, qty_milli=1000, discount_bp=1000)],
        )
        theirs = await make_document(
            s,
            petrov,
            DocType.CUSTOMER_ORDER,
            state=DocState.OPEN,
            car=bmw,
            number="ЦОА0000099",
            lines=[goods("Секретная деталь", price=999_900)],
        )
        await s.commit()
        return {
            "ivanov": ivanov.id,
            "petrov": petrov.id,
            "work": work.id,
            "order": order.id,
            "theirs": theirs.id,
        }


def screen(bot: BotHarness, user: int):
    return bot.api.bot_messages(user)[-1]


def seen(bot: BotHarness, user: int) -> str:
    return (screen(bot, user).plain_text or "").replace("\xa0", " ")


def alert(outcome) -> str:
    return outcome.of("answerCallbackQuery")[0].params.get("text", "")


async def client_row(bot: BotHarness, client_id: int) -> Client:
    async with bot.app.session_factory() as s:
        return await s.get_one(Client, client_id)


async def actions(bot: BotHarness) -> list[str]:
    async with bot.app.session_factory() as s:
        return list(await s.scalars(select(AuditLog.action).order_by(AuditLog.id)))


async def link(bot: BotHarness, user: int = CLIENT) -> None:
    await bot.send(user, contact="79451231010")


# --- linking by phone -------------------------------------------------------------------------


async def test_a_stranger_links_by_sharing_their_own_phone(bot, shop):
    out = await bot.send(CLIENT, "/start")
    [prompt] = out.sent
    keyboard = prompt.params["reply_markup"]["keyboard"]
    assert keyboard[0][0]["request_contact"] is True
    assert "Иванов" not in out.text and "поделитесь номером" in out.text

    out = await bot.send(CLIENT, contact="79451231010")
    assert out.texts[0].startswith("Готово: этот чат привязан к клиенту Иванов Иван.")
    assert "/stop" in out.texts[0]
    assert "remove_keyboard" in out.sent[0].params["reply_markup"]
    assert out.texts[1].startswith("Здравствуйте, Иванов Иван!")
    ivanov = await client_row(bot, shop["ivanov"])
    assert ivanov.telegram_chat_id == CLIENT and not ivanov.notifications_off
    async with bot.app.session_factory() as s:
        consents = (await s.scalars(select(Consent.granted))).all()
    assert consents == [True]
    assert "client.link" in await actions(bot)
    # from now on /start is the client's menu
    out = await bot.send(CLIENT, "/start")
    assert out.text.startswith("Здравствуйте, Иванов Иван!")


async def test_someone_elses_contact_is_refused(bot, shop):
    other = {"phone_number": "79451231010", "first_name": "Иван", "user_id": OTHER_USER}
    out = await bot.send(CLIENT, contact=other)
    assert out.text.startswith("Я принимаю только ваш собственный номер")
    assert (await client_row(bot, shop["ivanov"])).telegram_chat_id is None
    # a contact without a Telegram user behind it is not the sender's either
    out = await bot.send(
        CLIENT, contact={"phone_number": "79451231010", "first_name": "Иван", "user_id": None}
    )
    assert out.text.startswith("Я принимаю только ваш собственный номер")
    assert (await client_row(bot, shop["ivanov"])).telegram_chat_id is None


async def test_an_unknown_phone_tells_nothing(bot, shop):
    out = await bot.send(CLIENT, contact="79990000000")
    assert out.text.startswith("Клиент автосервиса с таким номером телефона не найден.")
    assert "Иванов" not in out.text and "Петров" not in out.text


async def test_several_clients_with_the_phone_a_manager_decides(bot, shop):
    async with bot.app.session_factory() as s:
        await make_client(s, "Иванова Мария", PHONE)  # the wife, same home phone
        await s.commit()
    out = await bot.send(CLIENT, contact="79451231010")
    assert out.text.startswith("Спасибо! Автосервис подтвердит, что это вы")
    assert "Иванов" not in out.text
    assert (await client_row(bot, shop["ivanov"])).telegram_chat_id is None

    await bot.send(MANAGER, "/start")
    menu = screen(bot, MANAGER)
    await bot.press(MANAGER, menu.button("Заявки на привязку")["callback_data"], menu.message_id)
    requests = screen(bot, MANAGER)
    assert "+7 (945) 123-10-10" in seen(bot, MANAGER)
    await bot.press(MANAGER, requests.buttons[0][0]["callback_data"], menu.message_id)
    text = seen(bot, MANAGER)
    assert "Иванов Иван" in text and "Иванова Мария" in text
    decision = screen(bot, MANAGER)
    link_ivanov = decision.button("Привязать к Иванов Иван")["callback_data"]
    none_of_these = decision.button("Никто из них")["callback_data"]

    out = await bot.press(MANAGER, link_ivanov, menu.message_id)
    assert alert(out) == "Привязано к клиенту Иванов Иван."
    told = [c.text for c in out.sent if int(c.params["chat_id"]) == CLIENT]
    assert told and told[0].startswith("Автосервис подтвердил, что это вы")
    assert (await client_row(bot, shop["ivanov"])).telegram_chat_id == CLIENT
    assert "Заявок на привязку нет." in seen(bot, MANAGER)

    # the other manager still has the old screen: the request is decided already
    out = await bot.press(OTHER_MANAGER, none_of_these, menu.message_id)
    assert alert(out) == "По этой заявке уже приняли решение."
    async with bot.app.session_factory() as s:
        request = await s.scalar(select(LinkRequest))
    assert (
        request is not None and request.state == "linked" and request.client_id == shop["ivanov"]
    )
    assert {"link_request.create", "link_request.decide", "client.link"} <= set(await actions(bot))
    # a master cannot decide, whatever they press
    out = await bot.press(MASTER, link_ivanov, 1)
    assert alert(out) == OUT_OF_DATE


# --- invite links ------------------------------------------------------------------------------


async def make_invite(bot: BotHarness, client_id: int) -> str:
    await bot.send(MANAGER, "/start")  # a message of the bot's, to open the card on
    out = await bot.press(
        MANAGER, OpenClient(client_id=client_id).pack(), screen(bot, MANAGER).message_id
    )
    card = screen(bot, MANAGER)
    out = await bot.press(
        MANAGER, card.button("Пригласить в бот")["callback_data"], card.message_id
    )
    [sent] = out.sent
    match = re.search(r"https://t\.me/\S+\?start=(c_[A-Za-z0-9_-]+)", sent.text or "")
    assert match, sent.text
    return match.group(1)


async def test_an_invite_link_links_once(bot, shop):
    token = await make_invite(bot, shop["ivanov"])
    out = await bot.send(CLIENT, f"/start {token}")
    assert out.texts[0].startswith("Готово: этот чат привязан к клиенту Иванов Иван.")
    assert (await client_row(bot, shop["ivanov"])).telegram_chat_id == CLIENT

    out = await bot.send(OTHER_USER, f"/start {token}")
    assert out.text == "Эта ссылка-приглашение уже использована."
    out = await bot.send(OTHER_USER, "/start c_forged")
    assert out.text == "Эта ссылка-приглашение недействительна."
    assert {"invite.create", "invite.redeem", "invite.refused"} <= set(await actions(bot))
    # staff opening a client link are told it is not for them, and it stays unused
    token = await make_invite(bot, shop["petrov"])
    out = await bot.send(MASTER, f"/start {token}")
    assert out.text.startswith("Эта ссылка-приглашение — для клиента")


async def test_an_invite_in_a_chat_linked_to_another_client_is_refused(bot, shop):
    await link(bot)  # this chat is Иванов's
    token = await make_invite(bot, shop["petrov"])
    out = await bot.send(CLIENT, f"/start {token}")
    assert (
        out.text
        == "Этот чат уже привязан к другому клиенту. Пожалуйста, свяжитесь с автосервисом."
    )
    assert (await client_row(bot, shop["petrov"])).telegram_chat_id is None
    assert (await client_row(bot, shop["ivanov"])).telegram_chat_id == CLIENT
    # Петров himself can still use it
    out = await bot.send(OTHER_USER, f"/start {token}")
    assert out.texts[0].startswith("Готово: этот чат привязан к клиенту Петров Пётр.")


# --- the linked client's menu --------------------------------------------------------------------


async def test_the_client_sees_only_their_own_cars_orders_and_debt(bot, shop):
    await link(bot)
    menu = screen(bot, CLIENT)
    await bot.press(CLIENT, menu.button("Мои автомобили")["callback_data"], menu.message_id)
    cars = seen(bot, CLIENT)
    assert "TOYOTA COROLLA" in cars and "в сервисе (ЦОА0000010)" in cars
    assert "BMW" not in cars

    await bot.press(CLIENT, screen(bot, CLIENT).button("Назад")["callback_data"], menu.message_id)
    await bot.press(
        CLIENT, screen(bot, CLIENT).button("Мои заказы")["callback_data"], menu.message_id
    )
    orders = seen(bot, CLIENT)
    assert "Ваш долг: 2 617,00 ₽" in orders
    assert "ЦОА0000042" in orders and "ЦОА0000010" in orders
    assert "ЦОА0000099" not in orders and "Секретная" not in orders

    await bot.press(
        CLIENT, screen(bot, CLIENT).button("ЦОА0000042")["callback_data"], menu.message_id
    )
    order = seen(bot, CLIENT)
    assert "Амортизатор" in order and "к оплате 117,00 ₽" in order
    assert "Оплатить 117,00\\xa0₽" in str(screen(bot, CLIENT).buttons)

    await bot.press(CLIENT, screen(bot, CLIENT).button("Назад")["callback_data"], menu.message_id)
    await bot.press(CLIENT, screen(bot, CLIENT).button("Назад")["callback_data"], menu.message_id)
    await bot.press(
        CLIENT, screen(bot, CLIENT).button("Мои записи")["callback_data"], menu.message_id
    )
    assert "Предстоящих записей нет." in seen(bot, CLIENT)


async def test_forged_presses_for_another_clients_order_are_refused_and_audited(bot, shop):
    await link(bot)
    mid = screen(bot, CLIENT).message_id
    before = seen(bot, CLIENT)
    for forged in (
        ClientOrder(order_id=shop["theirs"]).pack(),
        ClientPay(order_id=shop["theirs"]).pack(),
        OpenClient(client_id=shop["petrov"]).pack(),  # a staff screen
        "garbage",
    ):
        out = await bot.press(CLIENT, forged, mid)
        assert alert(out) == OUT_OF_DATE, forged
        assert out.of("sendMessage") == [] and out.of("editMessageText") == []
        assert out.of("sendInvoice") == []
    assert seen(bot, CLIENT) == before
    async with bot.app.session_factory() as s:
        refused = (
            await s.scalars(select(AuditLog.details).where(AuditLog.action == "button.refused"))
        ).all()
    assert len(refused) == 4
    assert refused[0]["reason"] == "not_own_order"


async def test_stop_then_start_records_consent(bot, shop):
    await link(bot)
    out = await bot.send(CLIENT, "/stop")
    assert out.text.startswith("Готово: уведомлений больше не будет.")
    assert (await client_row(bot, shop["ivanov"])).notifications_off
    out = await bot.send(CLIENT, "/stop")
    assert out.text.startswith("Уведомления уже отключены.")
    out = await bot.send(CLIENT, "/start")
    assert out.texts[0].startswith("Уведомления снова включены.")
    assert out.texts[1].startswith("Здравствуйте, Иванов Иван!")
    assert not (await client_row(bot, shop["ivanov"])).notifications_off
    async with bot.app.session_factory() as s:
        rows = (
            await s.execute(
                select(Consent.granted, Consent.text_version, Consent.channel).order_by(Consent.id)
            )
        ).all()
    assert [r[0] for r in rows] == [True, False, True]
    assert {r[2] for r in rows} == {"telegram"} and all(r[1] for r in rows)
    acts = await actions(bot)
    assert acts.count("consent.withdraw") == 1 and acts.count("consent.grant") == 2


async def test_what_the_client_writes_goes_to_the_shop(bot, shop):
    await link(bot)
    async with bot.app.session_factory() as s:
        client = await s.get_one(Client, shop["ivanov"])
        from datetime import UTC, datetime

        client.telegram_blocked_at = datetime.now(UTC)
        await s.commit()
    out = await bot.send(CLIENT, "Когда машина будет готова?")
    assert out.text == "Отправлено в автосервис. Вам ответят здесь или позвонят."
    async with bot.app.session_factory() as s:
        event = await s.scalar(select(Event))
    assert event is not None and event.text == "Когда машина будет готова?"
    assert event.direction == "in" and event.kind == "telegram" and event.processed_at is None
    assert (await client_row(bot, shop["ivanov"])).telegram_blocked_at is None
    # text that looks like a search gets nothing of the shop's data either
    out = await bot.send(CLIENT, "e444ee77")
    assert "BMW" not in out.text and "Петров" not in out.text


# --- paying -----------------------------------------------------------------------------------


def successful_payment_update(payload: str, amount: int, charge: str) -> dict:
    return {
        "message": {
            "message_id": int(time.time() * 1000) % 1_000_000,
            "date": int(time.time()),
            "chat": {"id": CLIENT, "type": "private"},
            "from": {"id": CLIENT, "is_bot": False, "first_name": "Иван"},
            "successful_payment": {
                "currency": "RUB",
                "total_amount": amount,
                "invoice_payload": payload,
                "telegram_payment_charge_id": charge,
                "provider_payment_charge_id": "prov-" + charge,
            },
        }
    }


async def test_the_client_pays_their_order_with_a_telegram_invoice(bot, shop):
    await link(bot)
    mid = screen(bot, CLIENT).message_id
    out = await bot.press(CLIENT, ClientOrder(order_id=shop["order"]).pack(), mid)
    pay = screen(bot, CLIENT).button("Оплатить 117,00")["callback_data"]
    out = await bot.press(CLIENT, pay, mid)
    [invoice] = out.of("sendInvoice")
    assert invoice.ok and int(invoice.params["chat_id"]) == CLIENT
    assert invoice.params["provider_token"] == PROVIDER
    assert invoice.params["prices"][0]["amount"] == 11_700
    payload = invoice.params["payload"]

    uid = bot.api.pre_checkout(CLIENT, payload, 11_700)
    await bot.handled(uid)
    assert bot.api.calls_of("answerPreCheckoutQuery")[-1].params["ok"] in (True, "true")
    for _ in range(2):  # delivered twice: recorded once
        uid = bot.api.enqueue(successful_payment_update(payload, 11_700, "tg-client-1"))
        await bot.handled(uid)
    async with bot.app.session_factory() as s:
        paid = (
            await s.execute(
                select(Document.amount, Payment.method)
                .join(Payment, Payment.document_id == Document.id)
                .where(Document.base_id == shop["order"])
            )
        ).all()
    assert [(a, str(m)) for a, m in paid] == [(11_700, "telegram")]
    thanks = [m.plain_text or "" for m in bot.api.bot_messages(CLIENT)]
    assert sum("Оплата получена" in t for t in thanks) == 1

    out = await bot.press(CLIENT, ClientOrder(order_id=shop["order"]).pack(), mid)
    [order] = [m for m in bot.api.bot_messages(CLIENT) if m.message_id == mid]
    assert "к оплате 0,00 ₽" in (order.plain_text or "").replace("\xa0", " ")
    assert "Оплатить" not in str(order.buttons)
    # a stale pay button: nothing is due, no invoice
    out = await bot.press(CLIENT, pay, mid)
    assert alert(out) == "По этому заказу нет долга."
    assert out.of("sendInvoice") == []
