"""Linking a client's chat, client invites, consent, and the client's own view of their
data: services against SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiogram.filters.callback_data import CallbackData
from sqlalchemy import func, select

from handlers import callbacks
from services import client_portal, clients_link, invites
from services.client_portal import CarStatus
from services.clients_link import DecideProblem, DecideRefused, LinkOutcome
from storage.models import (
    AuditLog,
    Booking,
    BookingState,
    Client,
    Consent,
    ContactInfo,
    ContactKind,
    Direction,
    DocState,
    DocType,
    Event,
    EventKind,
    LinkRequestState,
    Notification,
    Role,
)
from tests.factories import goods, make_car, make_client, make_document, make_payment, make_staff

PHONE = "79451231010"
CHAT, OTHER_CHAT = 7_100_001, 7_100_002


async def _actions(session) -> list[str]:
    return list(await session.scalars(select(AuditLog.action).order_by(AuditLog.id)))


async def _consents(session, client_id: int) -> list[bool]:
    rows = await session.scalars(
        select(Consent.granted).where(Consent.client_id == client_id).order_by(Consent.id)
    )
    return list(rows)


def test_contact_phones_are_read_with_or_without_plus() -> None:
    assert clients_link.contact_phone("79451231010") == PHONE
    assert clients_link.contact_phone("+7 945 123-10-10") == PHONE
    assert clients_link.contact_phone("12") is None


def test_callback_prefixes_are_unique() -> None:
    classes = [
        cls
        for cls in vars(callbacks).values()
        if isinstance(cls, type) and issubclass(cls, CallbackData) and cls is not CallbackData
    ]
    prefixes = [cls.__prefix__ for cls in classes]
    assert len(prefixes) == len(set(prefixes)), sorted(prefixes)


async def test_one_client_with_the_phone_is_linked_with_consent(session) -> None:
    client = await make_client(session, "Иванов Иван", "+7 (945) 123-10-10")
    client.telegram_blocked_at = datetime.now(UTC)
    await session.commit()
    result = await clients_link.link_by_phone(
        session, chat_id=CHAT, telegram_user_id=CHAT, phone=PHONE, name="Иван"
    )
    await session.commit()
    assert result.outcome is LinkOutcome.LINKED and result.client is not None
    await session.refresh(client)
    assert client.telegram_chat_id == CHAT and client.telegram_blocked_at is None
    assert await _consents(session, client.id) == [True]
    consent = await session.scalar(select(Consent))
    assert consent is not None and consent.text_version == clients_link.CONSENT_VERSION
    assert consent.channel == "telegram" and consent.chat_id == CHAT
    assert {"client.link", "consent.grant"} <= set(await _actions(session))
    again = await clients_link.link_by_phone(
        session, chat_id=CHAT, telegram_user_id=CHAT, phone=PHONE, name="Иван"
    )
    assert again.outcome is LinkOutcome.ALREADY_LINKED


async def test_a_phone_in_the_contact_info_matches_too(session) -> None:
    client = await make_client(session, "ООО Ромашка", "+7 495 000-00-00")
    session.add(ContactInfo(client_id=client.id, kind=ContactKind.PHONE, value=PHONE))
    await session.commit()
    result = await clients_link.link_by_phone(
        session, chat_id=CHAT, telegram_user_id=CHAT, phone=PHONE, name=None
    )
    assert result.outcome is LinkOutcome.LINKED and result.client.id == client.id  # type: ignore[union-attr]


async def test_no_match_links_nothing(session) -> None:
    await make_client(session, "Иванов Иван", "+7 (945) 123-10-10")
    result = await clients_link.link_by_phone(
        session, chat_id=CHAT, telegram_user_id=CHAT, phone="79990000000", name=None
    )
    assert result.outcome is LinkOutcome.NO_MATCH and result.client is None
    await session.commit()
    assert await session.scalar(select(func.count()).select_from(Consent)) == 0
    assert "client.link_refused" in await _actions(session)


async def test_several_clients_make_one_request_a_manager_decides_once(session) -> None:
    manager = await make_staff(session, "Мария", Role.MANAGER)
    other_manager = await make_staff(session, "Ольга", Role.MANAGER)
    admin = await make_staff(session, "Админ", Role.ADMIN)
    master = await make_staff(session, "Пётр", Role.MASTER)
    father = await make_client(session, "Иванов Иван", "+7 (945) 123-10-10")
    son = await make_client(session, "Иванов Пётр", "+7 (945) 123-10-10")
    stranger = await make_client(session, "Сидоров", "+7 (945) 999-99-99")
    await session.commit()

    first = await clients_link.link_by_phone(
        session, chat_id=CHAT, telegram_user_id=CHAT, phone=PHONE, name="Ваня"
    )
    second = await clients_link.link_by_phone(
        session, chat_id=CHAT, telegram_user_id=CHAT, phone=PHONE, name="Ваня"
    )
    await session.commit()
    assert first.outcome is second.outcome is LinkOutcome.PENDING
    assert first.request is not None and second.request is not None
    assert first.request.id == second.request.id  # asked twice: one request
    told = set(
        await session.scalars(
            select(Notification.staff_id).where(Notification.kind == "link_request")
        )
    )
    assert told == {manager.id, other_manager.id, admin.id}
    assert (await session.get(Client, father.id)).telegram_chat_id is None  # type: ignore[union-attr]

    request_id = first.request.id
    with pytest.raises(DecideRefused) as refused:
        await clients_link.decide(session, request_id, father.id, staff=master)
    assert refused.value.problem is DecideProblem.FORBIDDEN
    with pytest.raises(DecideRefused) as refused:
        await clients_link.decide(session, request_id, stranger.id, staff=manager)
    assert refused.value.problem is DecideProblem.NOT_A_CANDIDATE

    request, client = await clients_link.decide(session, request_id, son.id, staff=manager)
    await session.commit()
    assert request.state == LinkRequestState.LINKED and request.decided_by_id == manager.id
    assert client is not None and client.id == son.id and client.telegram_chat_id == CHAT
    assert await _consents(session, son.id) == [True]
    with pytest.raises(DecideRefused) as refused:
        await clients_link.decide(session, request_id, None, staff=other_manager)
    assert refused.value.problem is DecideProblem.DECIDED
    assert await clients_link.pending_requests(session) == []


async def test_a_client_linked_to_another_chat_is_a_managers_call(session) -> None:
    client = await make_client(session, "Иванов Иван", "+7 (945) 123-10-10")
    client.telegram_chat_id = OTHER_CHAT
    await session.commit()
    result = await clients_link.link_by_phone(
        session, chat_id=CHAT, telegram_user_id=CHAT, phone=PHONE, name=None
    )
    assert result.outcome is LinkOutcome.PENDING
    await session.refresh(client)
    assert client.telegram_chat_id == OTHER_CHAT


async def test_rejecting_a_request_links_nobody(session) -> None:
    manager = await make_staff(session, "Мария", Role.MANAGER)
    a = await make_client(session, "А", "+7 (945) 123-10-10")
    await make_client(session, "Б", "+7 (945) 123-10-10")
    await session.commit()
    result = await clients_link.link_by_phone(
        session, chat_id=CHAT, telegram_user_id=CHAT, phone=PHONE, name=None
    )
    request, client = await clients_link.decide(
        session,
        result.request.id,
        None,
        staff=manager,  # type: ignore[union-attr]
    )
    await session.commit()
    assert request.state == LinkRequestState.REJECTED and client is None
    assert (await session.get(Client, a.id)).telegram_chat_id is None  # type: ignore[union-attr]


async def test_client_invite_links_once(session) -> None:
    manager = await make_staff(session, "Мария", Role.MANAGER)
    client = await make_client(session, "Иванов Иван")
    await session.commit()
    made = await invites.create_client_invite(session, client.id, actor=manager)
    assert made is not None
    token, _expires = made
    assert token.startswith(invites.CLIENT_PREFIX) and len(token) <= 64
    await session.commit()
    linked = await invites.redeem_client_invite(session, token, chat_id=CHAT, telegram_id=CHAT)
    await session.commit()
    assert linked.id == client.id and linked.telegram_chat_id == CHAT
    assert await _consents(session, client.id) == [True]
    with pytest.raises(invites.InviteRefused) as refused:
        await invites.redeem_client_invite(
            session, token, chat_id=OTHER_CHAT, telegram_id=OTHER_CHAT
        )
    assert refused.value.problem is invites.InviteProblem.USED
    with pytest.raises(invites.InviteRefused) as refused:
        await invites.redeem_client_invite(session, "c_nonsense", chat_id=CHAT, telegram_id=CHAT)
    assert refused.value.problem is invites.InviteProblem.UNKNOWN
    # a staff invite's token is not a client invite
    staff_token, _ = await invites.create_staff_invite(session, Role.MASTER, actor=manager)
    with pytest.raises(invites.InviteRefused):
        await invites.redeem_client_invite(session, staff_token, chat_id=9, telegram_id=9)
    assert await invites.create_client_invite(session, 999_999, actor=manager) is None


async def test_expired_client_invite(session) -> None:
    manager = await make_staff(session, "Мария", Role.MANAGER)
    client = await make_client(session, "Иванов Иван")
    past = datetime.now(UTC) - timedelta(days=2)
    token, _ = await invites.create_client_invite(session, client.id, actor=manager, now=past)  # type: ignore[misc]
    with pytest.raises(invites.InviteRefused) as refused:
        await invites.redeem_client_invite(session, token, chat_id=CHAT, telegram_id=CHAT)
    assert refused.value.problem is invites.InviteProblem.EXPIRED


async def test_an_invite_in_another_clients_chat_is_refused_and_kept(session) -> None:
    manager = await make_staff(session, "Мария", Role.MANAGER)
    invited = await make_client(session, "Иванов Иван")
    holder = await make_client(session, "Петров Пётр", "+7 (945) 777-77-77")
    holder.telegram_chat_id = CHAT
    await session.commit()
    token, _ = await invites.create_client_invite(session, invited.id, actor=manager)  # type: ignore[misc]
    with pytest.raises(invites.InviteRefused) as refused:
        await invites.redeem_client_invite(session, token, chat_id=CHAT, telegram_id=CHAT)
    assert refused.value.problem is invites.InviteProblem.ALREADY_LINKED
    await session.commit()
    # still usable by the right person
    linked = await invites.redeem_client_invite(
        session, token, chat_id=OTHER_CHAT, telegram_id=OTHER_CHAT
    )
    assert linked.id == invited.id
    await session.refresh(holder)
    assert holder.telegram_chat_id == CHAT


async def test_stop_and_start_log_consent(session) -> None:
    client = await make_client(session, "Иванов Иван")
    client.telegram_chat_id = CHAT
    await session.commit()
    assert await clients_link.opt_out(session, client, chat_id=CHAT)
    assert not await clients_link.opt_out(session, client, chat_id=CHAT)
    assert client.notifications_off
    assert await clients_link.opt_in(session, client, chat_id=CHAT)
    assert not await clients_link.opt_in(session, client, chat_id=CHAT)
    await session.commit()
    assert not client.notifications_off
    assert await _consents(session, client.id) == [False, True]
    actions = await _actions(session)
    assert actions.count("consent.withdraw") == 1 and actions.count("consent.grant") == 1


async def test_the_portal_shows_only_the_clients_own(session) -> None:
    me = await make_client(session, "Иванов Иван")
    other = await make_client(session, "Петров Пётр", "+7 (945) 777-77-77")
    on_service = await make_car(session, me, name="TOYOTA COROLLA", plate="a111aa77")
    ready = await make_car(session, me, name="KIA RIO", plate="b222bb77", vin=None)
    idle = await make_car(session, me, name="LADA", plate="c333cc77", vin=None)
    theirs = await make_car(session, other, name="BMW X5", plate="e444ee77", vin=None)
    await make_document(
        session,
        me,
        DocType.WORK_ORDER,
        state=DocState.IN_PROGRESS,
        car=on_service,
        lines=[goods("Масло", price=100_000)],
    )
    done = await make_document(
        session,
        me,
        DocType.WORK_ORDER,
        state=DocState.COMPLETED,
        car=ready,
        lines=[goods("Фильтр", price=50_000)],
    )
    await make_payment(session, done, 20_000)
    await make_document(
        session, me, DocType.WORK_ORDER, state=DocState.CLOSED, car=idle, amount=10_000
    )
    closed = await make_document(
        session, me, DocType.CUSTOMER_ORDER, state=DocState.CLOSED, amount=30_000
    )
    await make_payment(session, closed, 30_000)  # settled and closed: not listed
    theirs_order = await make_document(
        session, other, DocType.CUSTOMER_ORDER, car=theirs, amount=99_900
    )
    await session.commit()

    cars = {c.name: c for c in await client_portal.my_cars(session, me.id)}
    assert set(cars) == {"TOYOTA COROLLA", "KIA RIO", "LADA"}
    assert cars["TOYOTA COROLLA"].status == CarStatus.ON_SERVICE
    assert cars["KIA RIO"].status == CarStatus.READY
    assert cars["LADA"].status is None

    mine = await client_portal.my_orders(session, me.id)
    by_id = {o.document.id: o for o in mine.orders}
    assert theirs_order.id not in by_id and closed.id not in by_id
    assert by_id[done.id].debt == 30_000 and by_id[done.id].payable
    assert mine.debt == 100_000 + 30_000 + 10_000
    assert await client_portal.my_order(session, me.id, theirs_order.id) is None
    detail = await client_portal.my_order(session, me.id, done.id)
    assert detail is not None and detail.car_name == "KIA RIO"
    assert [line.item for line in detail.lines] == ["Фильтр"]


async def test_bookings_ahead_only(session) -> None:
    me = await make_client(session, "Иванов Иван")
    other = await make_client(session, "Петров Пётр", "+7 (945) 777-77-77")
    now = datetime.now(UTC)

    def booking(
        client: Client, starts: datetime, state: BookingState = BookingState.ACTIVE
    ) -> Booking:
        return Booking(
            client_id=client.id,
            bay="1",
            starts_at=starts,
            ends_at=starts + timedelta(hours=1),
            state=state,
        )

    session.add_all(
        [
            booking(me, now + timedelta(days=2)),
            booking(me, now + timedelta(days=1)),
            booking(me, now - timedelta(days=1)),
            booking(me, now + timedelta(days=3), BookingState.CANCELLED),
            booking(other, now + timedelta(days=1)),
        ]
    )
    await session.commit()
    rows = await client_portal.my_bookings(session, me.id, now=now)
    assert [b.client_id for b, _car in rows] == [me.id, me.id]
    assert rows[0][0].starts_at < rows[1][0].starts_at


async def test_an_incoming_message_is_a_new_event_for_the_manager(session) -> None:
    manager = await make_staff(session, "Мария", Role.MANAGER)
    client = await make_client(session, "Иванов Иван", manager=manager)
    client.telegram_chat_id = CHAT
    client.telegram_blocked_at = datetime.now(UTC)
    await session.commit()
    event = await client_portal.record_incoming(
        session, client, "Когда будет готово?", chat_id=CHAT
    )
    await session.commit()
    row = await session.get(Event, event.id)
    assert row is not None and row.kind == EventKind.TELEGRAM
    assert row.direction == Direction.INCOMING and row.author_id is None
    assert row.processed_at is None and row.text == "Когда будет готово?"
    assert client.telegram_blocked_at is None
    told = list(
        await session.scalars(
            select(Notification.staff_id).where(Notification.kind == "new_event")
        )
    )
    assert told == [manager.id]
