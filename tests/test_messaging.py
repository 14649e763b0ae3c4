"""Contacting the client: calls, SMS through a gateway, e-mail through a real local SMTP
server, Telegram drafts, registered contacts and processing events, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from sqlalchemy import select

from services import messaging
from services.messaging import (
    CallOutcome,
    DeliveryStatus,
    HttpSmsGateway,
    MessagingProblem,
    MessagingRefused,
    RecordingSmsGateway,
    SmsResult,
    SmtpSettings,
    TlsMode,
)
from storage.models import AuditLog, Client, Direction, Event, EventKind, Role
from tests.factories import make_car, make_client, make_event, make_staff

API_KEY = "sk-live-very-secret-key"


@pytest.fixture
async def shop(session_factory):
    async with session_factory() as session:
        master = await make_staff(session, "Мастер Михаил", Role.MASTER)
        client = await make_client(
            session, "Иванов Иван", phone="+7 (945) 123-10-10", email="ivanov@mail.ru"
        )
        car = await make_car(session, client)
        await session.commit()
        return {"master": master, "client": client, "car": car}


async def _events(factory, client_id):
    async with factory() as session:
        return list(
            await session.scalars(
                select(Event).where(Event.client_id == client_id).order_by(Event.id)
            )
        )


async def _audit(factory, action):
    async with factory() as session:
        return list(
            await session.scalars(
                select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
            )
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- calls and registered contacts --------------------------------------------------


async def test_a_call_that_reached_the_client_is_done(session_factory, shop):
    async with session_factory() as session:
        event = await messaging.log_call(
            session,
            shop["client"].id,
            shop["master"],
            CallOutcome.REACHED,
            None,
            "договорились на пятницу",
            car_id=shop["car"].id,
        )
        await session.commit()
    [row] = await _events(session_factory, shop["client"].id)
    assert row.id == event.id
    assert (row.kind, row.direction, row.result) == (EventKind.CALL, Direction.OUTGOING, "reached")
    assert row.text == "договорились на пятницу"
    assert row.author_id == shop["master"].id and row.car_id == shop["car"].id
    assert row.recipient == "79451231010"  # the main phone
    assert row.processed_at is not None and row.processed_by_id == shop["master"].id
    [audit] = await _audit(session_factory, "event.call")
    assert audit.actor_staff_id == shop["master"].id and audit.entity_id == shop["client"].id


async def test_a_call_back_keeps_the_time_and_stays_new(session_factory, shop):
    at = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
    async with session_factory() as session:
        await messaging.log_call(
            session, shop["client"].id, shop["master"], CallOutcome.CALL_BACK, at, "занят"
        )
        await messaging.log_call(session, shop["client"].id, shop["master"], CallOutcome.NO_ANSWER)
        await session.commit()
    call_back, no_answer = await _events(session_factory, shop["client"].id)
    assert call_back.result == "call_back" and call_back.call_back_at == at
    assert call_back.processed_at is None  # someone has to call back
    assert no_answer.result == "no_answer" and no_answer.processed_at is None


async def test_a_naive_call_back_time_is_refused(session_factory, shop):
    async with session_factory() as session:
        with pytest.raises(MessagingRefused) as refused:
            await messaging.log_call(
                session,
                shop["client"].id,
                shop["master"],
                CallOutcome.CALL_BACK,
                datetime(2026, 12, 4, 9, 30),
            )
    assert refused.value.problem is MessagingProblem.NAIVE_TIME


async def test_register_a_contact(session_factory, shop):
    async with session_factory() as session:
        await messaging.log_manual_contact(
            session,
            shop["client"].id,
            shop["master"],
            EventKind.VISIT,
            Direction.INCOMING,
            "осмотр",
            "приехал без записи, стук в подвеске",
        )
        await messaging.log_manual_contact(
            session,
            shop["client"].id,
            shop["master"],
            EventKind.NOTE,
            Direction.OUTGOING,
            None,
            "предложить замену масла",
            follow_up=True,
        )
        await session.commit()
    visit, note = await _events(session_factory, shop["client"].id)
    assert (visit.kind, visit.direction, visit.result) == (
        EventKind.VISIT,
        Direction.INCOMING,
        "осмотр",
    )
    assert visit.processed_at is not None
    assert note.processed_at is None  # left for the team


async def test_contacts_are_refused_for_a_cashier_and_for_a_strange_car(session_factory, shop):
    async with session_factory() as session:
        cashier = await make_staff(session, "Кассир", Role.CASHIER)
        other = await make_client(session, "Петров", phone=None)
        foreign = await make_car(session, other, vin=None, plate="В002ВВ77")
        await session.commit()
        with pytest.raises(MessagingRefused) as refused:
            await messaging.log_call(session, shop["client"].id, cashier, CallOutcome.REACHED)
        assert refused.value.problem is MessagingProblem.FORBIDDEN
        with pytest.raises(MessagingRefused) as refused:
            await messaging.log_call(
                session,
                shop["client"].id,
                shop["master"],
                CallOutcome.REACHED,
                car_id=foreign.id,
            )
        assert refused.value.problem is MessagingProblem.CAR_NOT_LINKED


async def test_a_contact_moves_the_client_up_in_search(session_factory, shop):
    old = datetime(2020, 1, 1, tzinfo=UTC)
    async with session_factory() as session:
        client = await session.get_one(Client, shop["client"].id)
        client.last_activity_at = old
        await session.commit()
        await messaging.log_call(session, client.id, shop["master"], CallOutcome.REACHED)
        await session.commit()
        await session.refresh(client)
        assert client.last_activity_at > old


# --- SMS ----------------------------------------------------------------------------


async def test_sms_without_a_provider_is_recorded(session_factory, shop):
    gateway = RecordingSmsGateway()
    outcome = await messaging.send_sms(
        session_factory,
        client_id=shop["client"].id,
        staff=shop["master"],
        text="Ваш автомобиль готов",
        gateway=gateway,
    )
    assert outcome.status is DeliveryStatus.RECORDED and outcome.ok
    assert gateway.sent == [("+79451231010", "Ваш автомобиль готов")]
    [row] = await _events(session_factory, shop["client"].id)
    assert (row.kind, row.delivery_status, row.recipient) == (
        EventKind.SMS,
        "recorded",
        "79451231010",
    )
    assert row.text == "Ваш автомобиль готов"
    assert row.processed_at is not None


@dataclass
class _Watching:
    """A gateway that looks at the database while it is asked to send."""

    factory: object
    seen: list[tuple[str | None, str]] = field(default_factory=list)

    async def send(self, phone_e164: str, text: str) -> SmsResult:
        async with self.factory() as session:
            [row] = await session.scalars(select(Event).where(Event.kind == EventKind.SMS))
            self.seen.append((row.delivery_status, row.recipient))
        return SmsResult(DeliveryStatus.SENT, provider_id="p-1")


async def test_the_event_is_committed_before_the_message_is_sent(session_factory, shop):
    gateway = _Watching(session_factory)
    outcome = await messaging.send_sms(
        session_factory,
        client_id=shop["client"].id,
        staff=shop["master"],
        text="Тест",
        gateway=gateway,
        phone="8 916 854-56-78",
    )
    assert gateway.seen == [("pending", "79168545678")]
    assert outcome.status is DeliveryStatus.SENT and outcome.provider_id == "p-1"
    [row] = await _events(session_factory, shop["client"].id)
    assert (row.delivery_status, row.provider_message_id) == ("sent", "p-1")


class _Broken:
    async def send(self, phone_e164: str, text: str) -> SmsResult:
        raise RuntimeError("provider library bug")


async def test_a_gateway_that_raises_is_a_failed_delivery(session_factory, shop):
    outcome = await messaging.send_sms(
        session_factory,
        client_id=shop["client"].id,
        staff=shop["master"],
        text="Тест",
        gateway=_Broken(),
    )
    assert outcome.status is DeliveryStatus.FAILED
    assert outcome.error == "RuntimeError: provider library bug"
    [row] = await _events(session_factory, shop["client"].id)
    assert (row.delivery_status, row.delivery_error) == ("failed", outcome.error)
    assert row.processed_at is None  # a failed message is left for the staff


async def test_sms_refusals_write_nothing(session_factory, shop):
    async with session_factory() as session:
        silent = await make_client(session, "Без телефона", phone=None)
        await session.commit()
    for kwargs, problem in [
        ({"client_id": silent.id}, MessagingProblem.NO_PHONE),
        ({"text": "   "}, MessagingProblem.EMPTY),
        ({"text": "x" * 1001}, MessagingProblem.TOO_LONG),
        ({"phone": "12"}, MessagingProblem.BAD_PHONE),
        ({"client_id": 999_999}, MessagingProblem.CLIENT_NOT_FOUND),
    ]:
        args = {"client_id": shop["client"].id, "text": "Тест", **kwargs}
        with pytest.raises(MessagingRefused) as refused:
            await messaging.send_sms(
                session_factory, staff=shop["master"], gateway=RecordingSmsGateway(), **args
            )
        assert refused.value.problem is problem
    assert await _events(session_factory, shop["client"].id) == []
    assert await _events(session_factory, silent.id) == []


# --- the HTTP gateway against a local server ----------------------------------------


@dataclass
class _Provider:
    url: str
    requests: list[tuple[dict[str, str], dict[str, object]]]
    mode: dict[str, str]


@pytest.fixture
async def provider() -> AsyncIterator[_Provider]:
    requests: list[tuple[dict[str, str], dict[str, object]]] = []
    mode = {"answer": "ok"}
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        requests.append((dict(request.headers), await request.json()))
        if mode["answer"] == "error":
            return web.Response(status=500, text="internal error")
        if mode["answer"] == "hang":
            await release.wait()
        return web.json_response({"id": "msg-42", "status": "queued"})

    app = web.Application()
    app.router.add_post("/sms", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield _Provider(str(server.make_url("/sms")), requests, mode)
    finally:
        release.set()
        await server.close()


@pytest.fixture
async def http_client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def _send_via(factory, shop, gateway):
    return await messaging.send_sms(
        factory,
        client_id=shop["client"].id,
        staff=shop["master"],
        text="Ваш автомобиль готов",
        gateway=gateway,
    )


async def test_http_gateway_posts_json_with_the_key_in_a_header(
    session_factory, shop, provider, http_client
):
    gateway = HttpSmsGateway(provider.url, API_KEY, http_client, sender="AlfaAuto")
    outcome = await _send_via(session_factory, shop, gateway)
    assert outcome.status is DeliveryStatus.SENT and outcome.provider_id == "msg-42"
    [(headers, body)] = provider.requests
    assert headers["X-Api-Key"] == API_KEY
    assert body == {"to": "+79451231010", "text": "Ваш автомобиль готов", "from": "AlfaAuto"}
    [row] = await _events(session_factory, shop["client"].id)
    assert (row.delivery_status, row.provider_message_id) == ("sent", "msg-42")
    assert API_KEY not in repr(gateway)


async def test_http_500_is_a_failed_delivery(session_factory, shop, provider, http_client):
    provider.mode["answer"] = "error"
    outcome = await _send_via(
        session_factory, shop, HttpSmsGateway(provider.url, API_KEY, http_client)
    )
    assert outcome.status is DeliveryStatus.FAILED
    assert outcome.error == "HTTP 500: internal error"
    [row] = await _events(session_factory, shop["client"].id)
    assert (row.delivery_status, row.delivery_error) == ("failed", "HTTP 500: internal error")
    for audit in await _audit(session_factory, "event.delivery"):
        assert API_KEY not in str(audit.details)


async def test_a_provider_that_does_not_answer_in_time(
    session_factory, shop, provider, http_client
):
    provider.mode["answer"] = "hang"
    gateway = HttpSmsGateway(provider.url, API_KEY, http_client, timeout=0.2)
    outcome = await _send_via(session_factory, shop, gateway)
    assert outcome.status is DeliveryStatus.FAILED
    assert outcome.error is not None and outcome.error.startswith("timeout")
    [row] = await _events(session_factory, shop["client"].id)
    assert row.delivery_status == "failed" and row.delivery_error.startswith("timeout")


async def test_a_refused_connection(session_factory, shop, http_client):
    url = f"http://127.0.0.1:{_free_port()}/sms"
    outcome = await _send_via(session_factory, shop, HttpSmsGateway(url, API_KEY, http_client))
    assert outcome.status is DeliveryStatus.FAILED
    assert "ClientConnectorError" in (outcome.error or "")
    [row] = await _events(session_factory, shop["client"].id)
    assert row.delivery_status == "failed" and row.delivery_error == outcome.error


def test_http_gateway_wants_an_http_url():
    with pytest.raises(ValueError, match="http"):
        HttpSmsGateway("ftp://sms.example", API_KEY, None)  # type: ignore[arg-type]


# --- e-mail against a real local SMTP server ----------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server():
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield (
            inbox,
            SmtpSettings(
                host="127.0.0.1",
                port=controller.port,
                from_address="service@alfa-auto.ru",
                tls=TlsMode.NONE,
                timeout=5,
            ),
        )
    finally:
        controller.stop()


async def test_email_is_received_by_the_smtp_server(session_factory, shop, smtp_server):
    inbox, smtp = smtp_server
    outcome = await messaging.send_email(
        session_factory,
        client_id=shop["client"].id,
        staff=shop["master"],
        subject="Заказ-наряд ЦОА0000001 выполнен",
        body="Здравствуйте, Иван!\nВаш автомобиль готов, ждём вас.",
        smtp=smtp,
    )
    assert outcome.status is DeliveryStatus.SENT, outcome.error
    assert outcome.recipient == "ivanov@mail.ru"

    [(mail_from, rcpt, raw)] = inbox.messages
    assert mail_from == "service@alfa-auto.ru" and rcpt == ["ivanov@mail.ru"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "Заказ-наряд ЦОА0000001 выполнен"
    assert message["To"] == "ivanov@mail.ru"
    assert message.get_content_charset() == "utf-8"
    body = message.get_content().replace("\r\n", "\n").strip()  # SMTP sends CRLF
    assert body == "Здравствуйте, Иван!\nВаш автомобиль готов, ждём вас."
    assert message["Message-ID"] == outcome.provider_id

    [row] = await _events(session_factory, shop["client"].id)
    assert (row.kind, row.delivery_status, row.recipient) == (
        EventKind.EMAIL,
        "sent",
        "ivanov@mail.ru",
    )
    assert row.text.startswith("Заказ-наряд ЦОА0000001 выполнен\n\nЗдравствуйте")


async def test_email_to_another_address_and_a_bad_one(session_factory, shop, smtp_server):
    inbox, smtp = smtp_server
    await messaging.send_email(
        session_factory,
        client_id=shop["client"].id,
        staff=shop["master"],
        subject="Счёт",
        body="Во вложении счёт",
        smtp=smtp,
        to="Buh@Firma.RU",
    )
    assert inbox.messages[0][1] == ["Buh@firma.ru"]
    with pytest.raises(MessagingRefused) as refused:
        await messaging.send_email(
            session_factory,
            client_id=shop["client"].id,
            staff=shop["master"],
            subject="Счёт",
            body="x",
            smtp=smtp,
            to="buh@",
        )
    assert refused.value.problem is MessagingProblem.BAD_EMAIL


async def test_email_without_an_address_is_refused(session_factory, shop, smtp_server):
    _, smtp = smtp_server
    async with session_factory() as session:
        other = await make_client(session, "Без почты")
        await session.commit()
    with pytest.raises(MessagingRefused) as refused:
        await messaging.send_email(
            session_factory,
            client_id=other.id,
            staff=shop["master"],
            subject="Тема",
            body="Текст",
            smtp=smtp,
        )
    assert refused.value.problem is MessagingProblem.NO_EMAIL


async def test_email_to_a_server_that_is_not_there_fails_in_the_event(session_factory, shop):
    smtp = SmtpSettings(
        host="127.0.0.1",
        port=_free_port(),
        from_address="service@alfa-auto.ru",
        username="shop",
        password="smtp-secret-password",
        tls=TlsMode.NONE,
        timeout=5,
    )
    assert "smtp-secret-password" not in repr(smtp)
    outcome = await messaging.send_email(
        session_factory,
        client_id=shop["client"].id,
        staff=shop["master"],
        subject="Тема",
        body="Текст",
        smtp=smtp,
    )
    assert outcome.status is DeliveryStatus.FAILED and outcome.error
    assert "smtp-secret-password" not in outcome.error
    [row] = await _events(session_factory, shop["client"].id)
    assert row.delivery_status == "failed" and row.delivery_error == outcome.error
    assert row.processed_at is None


# --- Telegram -----------------------------------------------------------------------


async def test_telegram_message_is_recorded_for_the_handler_to_send(session_factory, shop):
    async with session_factory() as session:
        with pytest.raises(MessagingRefused) as refused:
            await messaging.prepare_telegram_message(
                session, shop["client"].id, shop["master"], "Готово"
            )
        assert refused.value.problem is MessagingProblem.NOT_LINKED
        await session.rollback()
        client = await session.get_one(Client, shop["client"].id)
        client.telegram_chat_id = 777_000_111
        await session.commit()

        draft = await messaging.prepare_telegram_message(
            session, client.id, shop["master"], "  Ваш автомобиль готов  "
        )
        await session.commit()
        assert (draft.chat_id, draft.text) == (777_000_111, "Ваш автомобиль готов")
        [pending] = await _events(session_factory, client.id)
        assert (pending.kind, pending.delivery_status, pending.recipient) == (
            EventKind.TELEGRAM,
            "pending",
            "777000111",
        )
        event = await messaging.record_delivery(
            session, draft.event_id, DeliveryStatus.SENT, provider_id="5501"
        )
        await session.commit()
        assert event.delivery_status == "sent" and event.provider_message_id == "5501"
        assert event.processed_by_id == shop["master"].id


# --- processing ---------------------------------------------------------------------


async def test_mark_processed_once(session_factory, shop):
    async with session_factory() as session:
        client = await session.get_one(Client, shop["client"].id)
        event = await make_event(session, client, text="Клиент звонил")
        await session.commit()
        assert await messaging.mark_processed(session, event.id, shop["master"]) is True
        await session.commit()
        assert await messaging.mark_processed(session, event.id, shop["master"]) is False
        await session.commit()
        with pytest.raises(MessagingRefused) as refused:
            await messaging.mark_processed(session, 999_999, shop["master"])
        assert refused.value.problem is MessagingProblem.EVENT_NOT_FOUND
    [row] = await _events(session_factory, shop["client"].id)
    assert row.processed_by_id == shop["master"].id and row.processed_at is not None
    [audit] = await _audit(session_factory, "event.processed")
    assert audit.entity_id == event.id


async def test_mark_all_processed(session_factory, shop):
    now = datetime.now(UTC)
    async with session_factory() as session:
        client = await session.get_one(Client, shop["client"].id)
        for minutes in (1, 2, 3):
            await make_event(session, client, at=now - timedelta(minutes=minutes))
        done = await make_event(session, client, processed=True, at=now - timedelta(hours=1))
        await session.commit()
        assert await messaging.mark_all_processed(session, client.id, shop["master"]) == 3
        await session.commit()
        assert await messaging.mark_all_processed(session, client.id, shop["master"]) == 0
        await session.commit()
    rows = await _events(session_factory, shop["client"].id)
    assert all(r.processed_at is not None for r in rows)
    untouched = next(r for r in rows if r.id == done.id)
    assert untouched.processed_by_id is None  # processed before, left as it was
    [audit] = await _audit(session_factory, "event.processed_all")
    assert audit.details["count"] == 3


async def test_recording_gateway_keeps_only_the_latest_in_memory():
    """The default gateway runs for the bot's whole life: memory stays bounded."""
    gateway = RecordingSmsGateway(keep=3)
    for i in range(5):
        result = await gateway.send("+79451231010", f"text {i}")
        assert result.status is DeliveryStatus.RECORDED
    assert [text for _, text in gateway.sent] == ["text 2", "text 3", "text 4"]
