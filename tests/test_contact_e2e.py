"""Contacting the client and editing contact information, end to end: the real aiogram
client in its polling loop against the local Bot API stand-in, a real database, a real
local SMTP server and a real local HTTP SMS gateway."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from pydantic import ValidationError
from sqlalchemy import select

from bot.app import LazyHttpSmsGateway, make_sms_gateway, make_smtp
from bot.config import Settings, SettingsError
from handlers.callbacks import ContactMenu
from handlers.contact import ContactEdit, EventDone, EventsAllDone, event_buttons
from services.events import list_events
from services.messaging import RecordingSmsGateway, TlsMode
from storage.models import AuditLog, Client, ContactInfo, Direction, Event, EventKind, Role
from tests.botapi import ChatMessage, Scripted
from tests.e2e_support import BotHarness, Outcome, running_bot
from tests.factories import make_client, make_event

MASTER, MANAGER, CASHIER = 100, 200, 300
LINKED_CHAT, BLOCKED_CHAT = 5_550_001, 5_550_002
API_KEY = "sms-key-0123456789"


# --- harness --------------------------------------------------------------------------------


async def _seed(bot: BotHarness) -> dict[str, int]:
    await bot.add_staff(MASTER, "Пётр Мастер", Role.MASTER)
    await bot.add_staff(MANAGER, "Анна Менеджер", Role.MANAGER)
    await bot.add_staff(CASHIER, "Ольга Кассир", Role.CASHIER)
    async with bot.app.session_factory() as s:
        ivanov = await make_client(s, "Иванов Иван", "+7 (945) 123-10-10", email="ivanov@mail.ru")
        linked = await make_client(s, "Петров Пётр", "+7 (916) 854-56-78")
        linked.telegram_chat_id = LINKED_CHAT
        blocked = await make_client(s, "Сидоров Сидор", "+7 (903) 777-66-55")
        blocked.telegram_chat_id = BLOCKED_CHAT
        old = await make_event(s, ivanov, kind=EventKind.NOTE, text="Спросить про шины")
        await s.commit()
        return {
            "ivanov": ivanov.id,
            "linked": linked.id,
            "blocked": blocked.id,
            "old_event": old.id,
        }


@pytest.fixture
async def bot(db_url: str) -> AsyncIterator[BotHarness]:
    async with running_bot(db_url) as harness:
        yield harness


@pytest.fixture
async def shop(bot: BotHarness) -> dict[str, int]:
    return await _seed(bot)


def screen(bot: BotHarness, user: int) -> ChatMessage:
    return bot.api.bot_messages(user)[-1]


def seen(bot: BotHarness, user: int) -> str:
    """What the user reads on the current screen (no-break spaces as spaces)."""
    return (screen(bot, user).plain_text or "").replace("\xa0", " ")


def buttons(bot: BotHarness, user: int) -> str:
    return " | ".join(b["text"] for row in screen(bot, user).buttons for b in row)


async def tap(bot: BotHarness, user: int, label: str) -> Outcome:
    """Press the button whose text contains ``label`` on the user's current screen."""
    current = screen(bot, user)
    return await bot.press(user, current.button(label)["callback_data"], current.message_id)


async def forge(bot: BotHarness, user: int, data: str) -> Outcome:
    """A press with data the user's screen does not offer (typed by hand, an old app...)."""
    return await bot.press(user, data, screen(bot, user).message_id)


def toast(outcome: Outcome) -> dict[str, Any]:
    [answer] = outcome.of("answerCallbackQuery")
    return answer.params


async def open_card(bot: BotHarness, user: int, name: str = "Иванов") -> None:
    out = await bot.send(user, f"/client {name}")
    assert name in out.text


async def events(bot: BotHarness, client_id: int) -> list[Event]:
    async with bot.app.session_factory() as s:
        return list(
            await s.scalars(select(Event).where(Event.client_id == client_id).order_by(Event.id))
        )


async def contact_values(bot: BotHarness, client_id: int) -> list[str]:
    async with bot.app.session_factory() as s:
        return list(
            await s.scalars(
                select(ContactInfo.value)
                .where(ContactInfo.client_id == client_id)
                .order_by(ContactInfo.id)
            )
        )


async def audit(bot: BotHarness, action: str) -> list[AuditLog]:
    async with bot.app.session_factory() as s:
        return list(
            await s.scalars(
                select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
            )
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- contact information --------------------------------------------------------------------


async def test_add_a_phone_refused_then_right_and_search_finds_it(bot, shop):
    await open_card(bot, MANAGER)
    await tap(bot, MANAGER, "Изменить контакты")
    text = seen(bot, MANAGER)
    assert "Контактная информация" in text
    assert "ivanov@mail.ru" in text and "+7 (945) 123-10-10 · основной телефон" in text

    await tap(bot, MANAGER, "Добавить")
    await tap(bot, MANAGER, "Телефон")  # not "Мобильный телефон": the case differs
    assert "Новый контакт: Телефон" in seen(bot, MANAGER)

    out = await bot.send(MANAGER, "12345")
    assert "Это не номер телефона: неверное количество цифр." in out.text
    assert "Отправьте другое значение" in out.text
    out = await bot.send(MANAGER, "ivanov")
    assert "Это не номер телефона: в нём нет цифр." in out.text  # the dialog is still open

    out = await bot.send(MANAGER, "8 916 111-22-33")
    assert "✅ Сохранено." in out.text and "Телефон: +7 (916) 111-22-33" in out.text
    assert await contact_values(bot, shop["ivanov"]) == [
        "ivanov@mail.ru",
        "79451231010",
        "79161112233",
    ]
    # The dialog is over: the next text is a search, and it finds the new number at once.
    out = await bot.send(MANAGER, "916 111-22-33")
    assert "Иванов Иван" in out.text and "+7 (916) 111-22-33" in out.text
    [added] = await audit(bot, "contact.add")
    assert added.details["after"]["value"] == "79161112233"


async def test_edit_and_delete_a_contact(bot, shop):
    await open_card(bot, MANAGER)
    await tap(bot, MANAGER, "Изменить контакты")
    await tap(bot, MANAGER, "✏️ 1.")  # the e-mail
    assert "Отправьте новое значение" in seen(bot, MANAGER)
    out = await bot.send(MANAGER, "ivanov-at-mail.ru")
    assert "Это не адрес электронной почты" in out.text
    out = await bot.send(MANAGER, "Ivan.Ivanov@Example.COM")
    assert "✅ Сохранено." in out.text and "Ivan.Ivanov@example.com" in out.text

    # The kind of a contact changes with a button: the mobile becomes a landline phone.
    await tap(bot, MANAGER, "✏️ 2.")
    await tap(bot, MANAGER, "Телефон")
    assert "2. Телефон: +7 (945) 123-10-10 · основной телефон" in seen(bot, MANAGER)

    await tap(bot, MANAGER, "🗑 1")
    assert "Удалить контакт Эл. почта: Ivan.Ivanov@example.com?" in seen(bot, MANAGER)
    await tap(bot, MANAGER, "Отмена")
    assert "Ivan.Ivanov@example.com" in seen(bot, MANAGER)  # nothing deleted
    await tap(bot, MANAGER, "🗑 1")
    out = await tap(bot, MANAGER, "Да, удалить")
    assert "🗑 Удалено." in out.text and "example.com" not in out.text
    assert await contact_values(bot, shop["ivanov"]) == ["79451231010"]
    assert [a.details["before"]["kind"] for a in await audit(bot, "contact.delete")] == ["email"]
    out = await bot.send(MANAGER, "/phone example.com")
    assert "Иванов Иван" not in out.text


async def test_cancel_ends_the_dialog_and_text_goes_to_the_search(bot, shop):
    await open_card(bot, MANAGER)
    await tap(bot, MANAGER, "Изменить контакты")
    await tap(bot, MANAGER, "Добавить")
    await tap(bot, MANAGER, "Адрес")
    out = await tap(bot, MANAGER, "Отмена")
    assert "Контактная информация" in out.text
    out = await bot.send(MANAGER, "Иванов")
    assert "Иванов Иван" in out.text and "Долг клиента" in out.text  # the card, found
    assert len(await contact_values(bot, shop["ivanov"])) == 2

    # A dialog left open is forgotten once the user goes elsewhere (a command, a search).
    await tap(bot, MANAGER, "Изменить контакты")
    await tap(bot, MANAGER, "Добавить")
    await tap(bot, MANAGER, "Адрес")
    await bot.send(MANAGER, "/filters")
    out = await bot.send(MANAGER, "Петров")
    assert "Петров Пётр" in out.text
    assert len(await contact_values(bot, shop["ivanov"])) == 2


async def test_a_shared_contact_is_taken_as_the_phone(bot, shop):
    await open_card(bot, MANAGER, "Петров")
    await tap(bot, MANAGER, "Изменить контакты")
    await tap(bot, MANAGER, "Добавить")
    await tap(bot, MANAGER, "Мобильный")
    out = await bot.send(MANAGER, contact={"phone_number": "+79031112233", "first_name": "П"})
    assert "+7 (903) 111-22-33" in out.text
    assert "79031112233" in await contact_values(bot, shop["linked"])


async def test_a_master_may_not_edit_contacts(bot, shop):
    await open_card(bot, MASTER)
    assert "Изменить контакты" not in buttons(bot, MASTER)
    out = await forge(bot, MASTER, ContactMenu(client_id=shop["ivanov"], action="edit").pack())
    assert toast(out)["text"] == "Эта кнопка устарела." and toast(out)["show_alert"] is True
    assert out.texts == []  # the card stays as it was
    async with bot.app.session_factory() as s:
        contact_id = await s.scalar(
            select(ContactInfo.id).where(ContactInfo.client_id == shop["ivanov"]).limit(1)
        )
    forged = ContactEdit(client_id=shop["ivanov"], action="del", contact_id=contact_id or 0)
    out = await forge(bot, MASTER, forged.pack())
    assert toast(out)["text"] == "Эта кнопка устарела."
    assert len(await contact_values(bot, shop["ivanov"])) == 2
    refused = await audit(bot, "button.refused")
    assert [(r.details["reason"], r.details["what"]) for r in refused] == [
        ("forbidden", "edit_client"),
        ("forbidden", "edit_client"),
    ]
    master = await bot.staff(MASTER)
    assert master is not None and {r.actor_staff_id for r in refused} == {master.id}


async def test_a_contact_of_another_client_is_refused(bot, shop):
    """A press naming one client and another client's contact is forged or stale."""
    await open_card(bot, MANAGER)
    async with bot.app.session_factory() as s:
        petrov_phone = await s.scalar(
            select(ContactInfo.id).where(ContactInfo.client_id == shop["linked"])
        )
    forged = ContactEdit(client_id=shop["ivanov"], action="del", contact_id=petrov_phone or 0)
    out = await forge(bot, MANAGER, forged.pack())
    assert toast(out)["text"] == "Эта кнопка устарела."
    assert await contact_values(bot, shop["linked"]) == ["79168545678"]
    [refused] = await audit(bot, "button.refused")
    assert (refused.details["reason"], refused.details["what"]) == ("stale", "contact_not_found")


# --- calls -----------------------------------------------------------------------------------


async def test_calls_with_every_outcome(bot, shop):
    tz = bot.settings.tz
    await open_card(bot, MASTER)
    await tap(bot, MASTER, "📞")
    assert "+7 (945) 123-10-10 · основной телефон" in seen(bot, MASTER)
    assert "Дозвонились" in buttons(bot, MASTER)

    out = await tap(bot, MASTER, "Дозвонились")
    assert toast(out)["text"] == "✅ Звонок записан: дозвонились."
    assert "✅ Звонок записан: дозвонились." in out.text
    assert "События (1 новых)" in buttons(bot, MASTER)  # the Events tab count follows
    pressed: dict[str, tuple[datetime, datetime]] = {}
    for label, new in (
        ("Не ответил", 2),
        ("через 1 ч", 3),
        ("через 3 ч", 4),
        ("завтра в 10:00", 5),
    ):
        await tap(bot, MASTER, "📞")
        before = datetime.now(tz)
        out = await tap(bot, MASTER, label)
        pressed[label] = (before, datetime.now(tz))
        assert f"События ({new} новых)" in buttons(bot, MASTER), label
        assert "Событие остаётся новым." in out.text
    calls = [e for e in await events(bot, shop["ivanov"]) if e.kind == EventKind.CALL]
    assert [c.result for c in calls] == [
        "reached",
        "no_answer",
        "call_back",
        "call_back",
        "call_back",
    ]
    assert [c.processed_at is None for c in calls] == [False, True, True, True, True]
    assert all(c.recipient == "79451231010" and c.direction == Direction.OUTGOING for c in calls)
    master = await bot.staff(MASTER)
    assert master is not None and {c.author_id for c in calls} == {master.id}

    in_1h, in_3h, tomorrow = (_aware(c.call_back_at) for c in calls[2:])
    for moment, (label, hours) in ((in_1h, ("через 1 ч", 1)), (in_3h, ("через 3 ч", 3))):
        before, after = pressed[label]
        assert before + timedelta(hours=hours) <= moment <= after + timedelta(hours=hours)
    local = tomorrow.astimezone(tz)  # tomorrow at 10:00 in the shop's time zone
    before, after = pressed["завтра в 10:00"]
    assert (local.hour, local.minute) == (10, 0)
    assert local.date() in {before.date() + timedelta(days=1), after.date() + timedelta(days=1)}

    # The Events tab lists them; "call back" stays new.
    await tap(bot, MASTER, "События")
    text = seen(bot, MASTER)
    assert text.count("🆕") == 5 and "Звонок" in text


def _aware(moment: datetime | None) -> datetime:
    assert moment is not None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def test_a_client_without_a_phone(bot, shop):
    async with bot.app.session_factory() as s:
        await make_client(s, "Безтелефонов Борис", None)
        await s.commit()
    await open_card(bot, MASTER, "Безтелефонов")
    await tap(bot, MASTER, "📞")
    assert "У клиента нет номера телефона." in seen(bot, MASTER)
    assert "Дозвонились" not in buttons(bot, MASTER)
    await tap(bot, MASTER, "Назад")
    out = await tap(bot, MASTER, "SMS")
    assert toast(out)["text"] == "У клиента нет номера телефона для SMS." and out.texts == []


# --- SMS -------------------------------------------------------------------------------------


async def _sms(bot: BotHarness, user: int, text: str) -> Outcome:
    await open_card(bot, user)
    out = await tap(bot, user, "SMS")
    assert "Отправьте текст SMS." in out.text
    out = await bot.send(user, text)
    assert text in out.text and "Отправить?" in out.text
    return await tap(bot, user, "Отправить")


async def test_sms_without_a_gateway_is_recorded(bot, shop):
    out = await _sms(bot, MASTER, "Ваш автомобиль готов")
    assert "SMS-шлюз не настроен: SMS на +7 (945) 123-10-10 записано в события" in out.text
    [sms] = [e for e in await events(bot, shop["ivanov"]) if e.kind == EventKind.SMS]
    assert (sms.text, sms.delivery_status, sms.recipient) == (
        "Ваш автомобиль готов",
        "recorded",
        "79451231010",
    )
    assert sms.processed_at is not None
    assert bot.app.sms_gateway.sent == [("+79451231010", "Ваш автомобиль готов")]  # type: ignore[attr-defined]
    # "Send" again: the dialog is over, nothing is sent twice.
    out = await forge(bot, MASTER, screen(bot, MASTER).buttons[0][0]["callback_data"])
    assert len([e for e in await events(bot, shop["ivanov"]) if e.kind == EventKind.SMS]) == 1


async def test_a_text_typed_again_replaces_the_preview(bot, shop):
    await open_card(bot, MANAGER)
    await tap(bot, MANAGER, "SMS")
    first = await bot.send(MANAGER, "Первый вариант")
    out = await bot.send(MANAGER, "Второй вариант")
    assert "Второй вариант" in out.text
    # the first preview lost its buttons: only the latest one can send
    [old] = [
        m
        for m in bot.api.bot_messages(MANAGER)
        if m.message_id == first.sent[0].result["message_id"]
    ]
    assert old.buttons == []
    out = await tap(bot, MANAGER, "Отправить")
    assert bot.app.sms_gateway.sent == [("+79451231010", "Второй вариант")]  # type: ignore[attr-defined]


@pytest.fixture
async def failing_gateway() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append({"headers": dict(request.headers), "json": await request.json()})
        return web.Response(status=500, text="internal error")

    app = web.Application()
    app.router.add_post("/sms", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/sms")), received
    finally:
        await server.close()


async def test_sms_through_a_gateway_that_fails(db_url, failing_gateway):
    url, received = failing_gateway
    async with running_bot(db_url, sms_gateway_url=url, sms_api_key=API_KEY) as bot:
        shop = await _seed(bot)
        out = await _sms(bot, MANAGER, "Запись на ТО подтверждена")
        assert "SMS на +7 (945) 123-10-10 не отправлено: HTTP 500: internal error" in out.text
        assert "Попытка записана в события." in out.text
        [sms] = [e for e in await events(bot, shop["ivanov"]) if e.kind == EventKind.SMS]
        assert sms.text == "Запись на ТО подтверждена"  # nothing lost
        assert (sms.delivery_status, sms.delivery_error) == ("failed", "HTTP 500: internal error")
        assert sms.processed_at is None  # a failed delivery stays new
        [request] = received
        assert request["headers"]["X-Api-Key"] == API_KEY
        assert request["json"] == {"to": "+79451231010", "text": "Запись на ТО подтверждена"}
        assert API_KEY not in out.text


# --- e-mail ----------------------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


async def test_email_is_received_by_the_smtp_server(db_url, smtp_server):
    inbox, port = smtp_server
    settings = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_tls": "none",
        "smtp_from": "service@alfa-auto.ru",
    }
    async with running_bot(db_url, **settings) as bot:
        shop = await _seed(bot)
        await open_card(bot, MANAGER)
        out = await tap(bot, MANAGER, "📧")
        assert "Отправьте тему письма" in out.text
        out = await bot.send(MANAGER, "Заказ-наряд выполнен")
        assert "Тема: Заказ-наряд выполнен" in out.text
        out = await bot.send(MANAGER, "Здравствуйте, Иван!\nВаш автомобиль готов.")
        assert "Ваш автомобиль готов." in out.text
        out = await tap(bot, MANAGER, "Отправить")
        assert "✅ Письмо отправлено на ivanov@mail.ru." in out.text

        [(mail_from, rcpt, raw)] = inbox.messages
        assert (mail_from, rcpt) == ("service@alfa-auto.ru", ["ivanov@mail.ru"])
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message["Subject"] == "Заказ-наряд выполнен"
        body = message.get_content().replace("\r\n", "\n").strip()
        assert body == "Здравствуйте, Иван!\nВаш автомобиль готов."
        [sent] = [e for e in await events(bot, shop["ivanov"]) if e.kind == EventKind.EMAIL]
        assert (sent.delivery_status, sent.recipient) == ("sent", "ivanov@mail.ru")

        # The default subject: one step less.
        await tap(bot, MANAGER, "Назад")
        await tap(bot, MANAGER, "📧")
        await tap(bot, MANAGER, "Тема по умолчанию")
        await bot.send(MANAGER, "Ждём вас завтра.")
        await tap(bot, MANAGER, "Отправить")
        assert len(inbox.messages) == 2
        second = email.message_from_bytes(inbox.messages[1][2], policy=email.policy.default)
        assert second["Subject"] == "Сообщение от вашего автосервиса"


async def test_email_not_configured(bot, shop):
    await open_card(bot, MANAGER)
    out = await tap(bot, MANAGER, "📧")
    assert toast(out)["text"].startswith("Электронная почта не настроена")
    assert toast(out)["show_alert"] is True and out.texts == []


# --- Telegram --------------------------------------------------------------------------------


async def _telegram(bot: BotHarness, client_id: int, name: str, text: str) -> Outcome:
    await open_card(bot, MANAGER, name)
    out = await forge(bot, MANAGER, ContactMenu(client_id=client_id, action="tg").pack())
    assert "Отправьте текст сообщения." in out.text
    await bot.send(MANAGER, text)
    return await tap(bot, MANAGER, "Отправить")


async def test_telegram_message_to_a_linked_client(bot, shop):
    bot.api.known_chat(LINKED_CHAT)
    out = await _telegram(bot, shop["linked"], "Петров", "Ваш автомобиль готов <3")
    assert "✅ Доставлено клиенту в Telegram." in out.texts[-1]
    [delivered] = bot.api.bot_messages(LINKED_CHAT)
    assert delivered.text == "Ваш автомобиль готов <3" and delivered.parse_mode is None
    [event] = [e for e in await events(bot, shop["linked"]) if e.kind == EventKind.TELEGRAM]
    assert (event.delivery_status, event.recipient, event.provider_message_id) == (
        "sent",
        str(LINKED_CHAT),
        str(delivered.message_id),
    )


async def test_telegram_message_to_a_client_who_blocked_the_bot(bot, shop):
    bot.api.known_chat(BLOCKED_CHAT)
    bot.api.script(
        "sendMessage",
        Scripted(
            403,
            "Forbidden: bot was blocked by the user",
            when=lambda params: int(params["chat_id"]) == BLOCKED_CHAT,
        ),
    )
    out = await _telegram(bot, shop["blocked"], "Сидоров", "Ваш автомобиль готов")
    assert "❌ Сообщение в Telegram не доставлено: Forbidden: bot was blocked by the user" in (
        out.text
    )
    assert bot.api.bot_messages(BLOCKED_CHAT) == []
    [event] = [e for e in await events(bot, shop["blocked"]) if e.kind == EventKind.TELEGRAM]
    assert event.delivery_status == "failed"
    assert event.delivery_error == "Forbidden: bot was blocked by the user"
    assert event.text == "Ваш автомобиль готов" and event.processed_at is None


async def test_telegram_to_a_client_not_linked(bot, shop):
    await open_card(bot, MANAGER)
    out = await forge(bot, MANAGER, ContactMenu(client_id=shop["ivanov"], action="tg").pack())
    assert toast(out)["text"] == "Клиент не связал Telegram с ботом — писать некуда."


# --- register contact ------------------------------------------------------------------------


async def test_register_a_contact(bot, shop):
    await open_card(bot, MASTER)
    out = await tap(bot, MASTER, "Регистрация контакта")
    assert "Вид: Визит" in out.text and "Направление: входящий" in out.text
    out = await tap(bot, MASTER, "💾")
    assert toast(out)["text"] == "Сначала напишите комментарий или выберите результат."
    await tap(bot, MASTER, "Звонок")
    await tap(bot, MASTER, "исходящий")
    await tap(bot, MASTER, "договорились")
    await tap(bot, MASTER, "Требует реакции")
    out = await bot.send(MASTER, "Приедет в пятницу на замену масла")
    assert "Комментарий: Приедет в пятницу на замену масла" in out.text
    assert "Требует реакции: да" in out.text and "Результат: договорились" in out.text
    out = await tap(bot, MASTER, "💾")
    assert "✅ Контакт зарегистрирован. Событие остаётся новым." in out.text
    assert "События (2 новых)" in buttons(bot, MASTER)  # the old note and this one
    [event] = [e for e in await events(bot, shop["ivanov"]) if e.kind == EventKind.CALL]
    assert (event.direction, event.result, event.text) == (
        Direction.OUTGOING,
        "agreed",
        "Приедет в пятницу на замену масла",
    )
    assert event.processed_at is None


# --- the Events tab: processed ---------------------------------------------------------------


async def test_mark_one_and_all_processed(bot, shop):
    await open_card(bot, MASTER)
    await tap(bot, MASTER, "📞")
    await tap(bot, MASTER, "Не ответил")
    await tap(bot, MASTER, "События")
    assert seen(bot, MASTER).count("🆕") == 2

    out = await forge(bot, MASTER, EventDone(event_id=shop["old_event"]).pack())
    assert toast(out)["text"] == "Отмечено как обработанное."
    assert seen(bot, MASTER).count("🆕") == 1  # the tab, shown again
    master = await bot.staff(MASTER)
    assert master is not None
    [old] = [e for e in await events(bot, shop["ivanov"]) if e.id == shop["old_event"]]
    assert old.processed_by_id == master.id and old.processed_at is not None
    processed_at = old.processed_at
    out = await forge(bot, MASTER, EventDone(event_id=shop["old_event"]).pack())
    assert toast(out)["text"] == "Уже обработано."

    await open_card(bot, MANAGER)
    await tap(bot, MANAGER, "События")
    out = await forge(bot, MANAGER, EventsAllDone(client_id=shop["ivanov"]).pack())
    assert toast(out)["text"] == "Отмечено обработанными: 1."
    assert "🆕" not in seen(bot, MANAGER)
    manager = await bot.staff(MANAGER)
    assert manager is not None
    rows = await events(bot, shop["ivanov"])
    assert all(e.processed_at is not None for e in rows)
    assert {e.id: e.processed_by_id for e in rows} == {
        shop["old_event"]: master.id,  # who processed it first is kept
        rows[-1].id: manager.id,
    }
    assert [e.processed_at for e in rows if e.id == shop["old_event"]] == [processed_at]
    out = await forge(bot, MANAGER, EventsAllDone(client_id=shop["ivanov"]).pack())
    assert toast(out)["text"] == "Новых событий нет."


async def test_a_cashier_may_not_process_events(bot, shop):
    await open_card(bot, CASHIER)
    out = await forge(bot, CASHIER, EventDone(event_id=shop["old_event"]).pack())
    assert toast(out)["text"] == "Эта кнопка устарела."
    [old] = [e for e in await events(bot, shop["ivanov"]) if e.id == shop["old_event"]]
    assert old.processed_at is None
    out = await forge(bot, CASHIER, EventDone(event_id=987654).pack())
    assert toast(out)["text"] == "Эта кнопка устарела."


async def test_event_buttons_for_the_events_tab(bot, shop):
    async with bot.app.session_factory() as s:
        client = await s.get_one(Client, shop["ivanov"])
        await make_event(s, client, kind=EventKind.CALL, text="done", processed=True)
        await s.commit()
        rows, _total = await list_events(s, shop["ivanov"])
    with bot.app.i18n.context(), bot.app.i18n.use_locale("ru"):
        rows_of_buttons = event_buttons(rows, shop["ivanov"], page=0, tz=bot.settings.tz)
    labels = [row[0].text for row in rows_of_buttons]
    assert len(labels) == 2  # the one new event, and "all"
    assert labels[0].startswith("✔ Заметка · ") and labels[0].endswith("Спросить про шины")
    assert labels[1] == "✔ Отметить все обработанными"
    assert all(len(row[0].callback_data.encode()) <= 64 for row in rows_of_buttons)
    assert event_buttons([], shop["ivanov"]) == []


# --- settings: the SMS gateway and SMTP ----------------------------------------------------


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_sms_gateway_from_the_settings() -> None:
    assert isinstance(make_sms_gateway(_settings()), RecordingSmsGateway)
    gateway = make_sms_gateway(
        _settings(sms_gateway_url="https://sms.example/send", sms_api_key=API_KEY)
    )
    assert isinstance(gateway, LazyHttpSmsGateway) and API_KEY not in repr(gateway)
    with pytest.raises(SettingsError) as missing:
        make_sms_gateway(_settings(sms_gateway_url="https://sms.example/send"))
    assert missing.value.variable == "SMS_API_KEY"
    with pytest.raises(ValidationError):
        _settings(sms_gateway_url="ftp://sms.example")


def test_smtp_from_the_settings() -> None:
    assert make_smtp(_settings()) is None
    smtp = make_smtp(
        _settings(smtp_host="mail.example", smtp_user="shop@example.ru", smtp_password="pw")
    )
    assert smtp is not None
    assert (smtp.port, smtp.tls, smtp.from_address, smtp.username, smtp.password) == (
        587,
        TlsMode.STARTTLS,
        "shop@example.ru",
        "shop@example.ru",
        "pw",
    )
    assert "pw" not in repr(smtp)
    tls = make_smtp(_settings(smtp_host="mail.example", smtp_tls="TLS", smtp_from="a@b.ru"))
    assert tls is not None and (tls.port, tls.tls, tls.username) == (465, TlsMode.TLS, None)
    with pytest.raises(SettingsError) as missing:
        make_smtp(_settings(smtp_host="mail.example", smtp_user="login"))
    assert missing.value.variable == "SMTP_FROM"
    with pytest.raises(ValidationError):
        _settings(smtp_tls="ssl")
