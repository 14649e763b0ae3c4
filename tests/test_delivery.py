"""The outbox worker against the local Bot API: limits kept, faults handled, nothing lost.

The worker here is the app's own (``bot.app.build``), talking HTTP to ``FakeBotAPI``; its
policy is tightened where a test would otherwise wait minutes (backoff, lease): the bench
is ``tests/delivery_support.py``, which ``tests/test_pacing.py`` shares.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.pacing import busiest_window
from handlers import alerts
from services import outbox
from storage.models import (
    Client,
    DocState,
    DocType,
    Notification,
    NotificationState,
    Role,
)
from tests.botapi import (
    Call,
    bad_request,
    blocked,
    delayed,
    migrated,
    retry_after,
    server_error,
)
from tests.delivery_support import PING, Shop, render_ping
from tests.delivery_support import shop as shop  # the fixture
from tests.factories import make_car, make_client, make_document, make_event, make_staff, work


def texts(calls: list[Call]) -> list[str | None]:
    return [c.text for c in calls]


# --- the plain path -----------------------------------------------------------------------


async def test_a_notification_is_sent_once_and_its_message_id_kept(shop: Shop):
    shop.api.known_chat(501)
    await shop.ping(501, "hello")
    await shop.deliver_all()
    await shop.worker.drain(1)  # again: nothing more
    sent = shop.api.sent(501)
    assert texts(sent) == ["hello"]
    (row,) = await shop.rows()
    assert row.state is NotificationState.SENT
    assert row.message_id == sent[0].result["message_id"]
    assert row.chat_id == 501 and row.sent_at is not None


async def test_one_message_per_second_per_chat(shop: Shop):
    shop.api.known_chat(502)
    for n in range(3):
        await shop.ping(502, f"m{n}")
    await shop.deliver_all()
    sent = shop.api.sent(502)
    assert texts(sent) == ["m0", "m1", "m2"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.95, gaps


async def test_alerts_waiting_for_one_manager_go_as_one_digest(shop: Shop):
    async with shop.app.session_factory() as session, session.begin():
        manager = await make_staff(session, "Менеджер", Role.MANAGER)
        client = await make_client(session, "Сидоров <Сидор>", manager=manager)
        events = [await make_event(session, client, text=f"звонок {n}") for n in range(4)]
        for event in events:
            await outbox.enqueue(
                session,
                outbox.Kind.NEW_EVENT,
                f"new_event:{event.id}:{manager.id}",
                staff_id=manager.id,
                payload={"event_id": event.id, "client_id": client.id},
                digestible=True,
            )
        chat = manager.telegram_id
    shop.api.known_chat(chat)
    await shop.deliver_all()
    (digest,) = shop.api.sent(chat)
    assert "Новых уведомлений: 4" in digest.text
    for n in range(4):
        assert f"Сидоров <Сидор>: Звонок — звонок {n}" in digest.text
    rows = await shop.rows()
    assert {r.state for r in rows} == {NotificationState.SENT}
    assert {r.message_id for r in rows} == {digest.result["message_id"]}


async def test_an_alert_about_something_done_since_is_dropped(shop: Shop):
    async with shop.app.session_factory() as session, session.begin():
        manager = await make_staff(session, "Менеджер", Role.MANAGER)
        client = await make_client(session, manager=manager)
        event = await make_event(session, client, processed=True)
        await outbox.enqueue(
            session,
            outbox.Kind.NEW_EVENT,
            "new_event:x",
            staff_id=manager.id,
            payload={"event_id": event.id, "client_id": client.id},
        )
        chat = manager.telegram_id
    shop.api.known_chat(chat)
    await shop.deliver_all()
    assert shop.api.sent(chat) == []
    (row,) = await shop.rows()
    assert (row.state, row.last_error) == (NotificationState.DROPPED, "out of date")


# --- the client's side --------------------------------------------------------------------


async def _client_with_chat(shop: Shop, chat: int | None, **changes: Any) -> int:
    async with shop.app.session_factory() as session, session.begin():
        client = await make_client(session, f"Клиент {chat}", phone=None)
        client.telegram_chat_id = chat
        for name, value in changes.items():
            setattr(client, name, value)
        if chat is not None:
            shop.api.known_chat(chat)
        return client.id


async def test_the_car_is_ready_with_the_amount_due(shop: Shop):
    async with shop.app.session_factory() as session, session.begin():
        master = await make_staff(session, "Мастер", Role.MASTER)
        client = await make_client(session, "Иванов", phone=None)
        client.telegram_chat_id = 601
        car = await make_car(session, client, name="Лада Веста", plate="А123ВС77")
        order = await make_document(
            session,
            client,
            DocType.WORK_ORDER,
            state=DocState.IN_PROGRESS,
            car=car,
            lines=[work("Замена масла", price=150_000)],
        )
        from services import documents

        await documents.change_state(session, order.id, DocState.COMPLETED, actor=master)
    shop.api.known_chat(601)
    await shop.deliver_all()
    (message,) = shop.api.sent(601)
    assert "Лада Веста, А123ВС77 — готово, можно забирать" in message.text
    assert "К оплате: 1\xa0500,00\xa0₽" in message.text


async def test_clients_opted_out_unlinked_or_unreachable_get_nothing(shop: Shop):
    ids = [
        await _client_with_chat(shop, None),
        await _client_with_chat(shop, 611, notifications_off=True),
        await _client_with_chat(shop, 612, telegram_blocked_at=datetime.now(UTC)),
    ]
    async with shop.app.session_factory() as session, session.begin():
        for client_id in ids:
            session.add(
                Notification(key=f"k{client_id}", kind=PING, client_id=client_id, payload={})
            )
    await shop.deliver_all()
    assert shop.api.sent() == []
    rows = await shop.rows()
    assert [r.last_error for r in rows] == ["no linked chat", "opted out", "chat unreachable"]
    assert {r.state for r in rows} == {NotificationState.DROPPED}


async def test_quiet_hours_hold_a_clients_message_until_morning(shop: Shop):
    now = datetime.now(UTC).astimezone(shop.worker.policy.tz)
    start = (now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (now + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    worker = shop.with_policy(quiet=(start, end))
    client_id = await _client_with_chat(shop, 621)
    async with shop.app.session_factory() as session, session.begin():
        session.add(
            Notification(key="calm", kind=PING, client_id=client_id, payload={"text": "a"})
        )
        session.add(
            Notification(
                key="urgent", kind=PING, client_id=client_id, payload={"text": "b"}, urgent=True
            )
        )
    shop.api.known_chat(622)
    await shop.ping(622, "staff and bare chats are not held")
    await worker.drain(5)
    assert texts(shop.api.sent(621)) == ["b"]
    assert len(shop.api.sent(622)) == 1
    calm = next(r for r in await shop.rows() if r.key == "calm")
    assert calm.state is NotificationState.PENDING
    assert calm.attempts == 0
    expected_end = datetime.combine(now.date(), end, tzinfo=shop.worker.policy.tz)
    if end < start:
        expected_end += timedelta(days=1)
    assert calm.not_before == expected_end.astimezone(UTC)


# --- faults --------------------------------------------------------------------------------


async def test_429_waits_retry_after_then_sends(shop: Shop):
    shop.api.known_chat(701)
    shop.api.script("sendMessage", retry_after(1))
    await shop.ping(701, "after the flood")
    await shop.deliver_all()
    calls = shop.api.calls_of("sendMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0
    (row,) = await shop.rows()
    assert row.state is NotificationState.SENT
    assert row.attempts == 1  # the 429 did not count: only the attempt that went through


async def test_server_errors_back_off_then_send(shop: Shop):
    shop.api.known_chat(702)
    shop.api.script("sendMessage", server_error(), server_error("Bad Gateway"))
    await shop.ping(702, "eventually")
    await shop.deliver_all()
    calls = shop.api.calls_of("sendMessage")
    assert [c.status for c in calls] == [500, 500, 200]
    (row,) = await shop.rows()
    assert (row.state, row.attempts) == (NotificationState.SENT, 3)
    assert row.last_error is None


async def test_a_timeout_is_retried_and_the_message_is_not_lost(shop: Shop):
    worker = shop.with_policy(send_timeout=1)
    shop.api.known_chat(703)
    shop.api.script("sendMessage", delayed(3))
    await shop.ping(703, "slow")
    await shop.deliver_all(worker)
    (row,) = await shop.rows()
    assert row.state is NotificationState.SENT
    assert row.attempts == 2
    # The slow answer may have delivered it too: at least once, never lost.
    assert 1 <= len(shop.api.sent(703)) <= 2


async def test_given_up_after_the_last_attempt_and_the_admins_are_told(shop: Shop):
    worker = shop.with_policy(max_attempts=3)
    async with shop.app.session_factory() as session, session.begin():
        admin = await make_staff(session, "Админ", Role.ADMIN)
    shop.api.known_chat(admin.telegram_id)
    shop.api.known_chat(704)
    shop.api.script("sendMessage", *(server_error() for _ in range(3)))
    await shop.ping(704, "never")
    await shop.deliver_all(worker)
    assert shop.api.sent(704) == []
    rows = await shop.rows()
    assert rows[0].state is NotificationState.DEAD
    assert "Internal Server Error" in (rows[0].last_error or "")
    (alert,) = shop.api.sent(admin.telegram_id)
    assert "Не удалось доставить уведомление" in alert.text
    assert "Internal Server Error" in alert.text


async def test_a_chat_that_was_never_opened_is_dead_not_retried(shop: Shop):
    shop.api.known_chat(705)
    shop.api.script("sendMessage", bad_request("chat not found"))
    await shop.ping(705, "to nobody")
    await shop.deliver_all()
    (row,) = await shop.rows()
    assert row.state is NotificationState.DEAD
    assert row.attempts == 1


async def test_a_blocked_client_is_marked_and_the_manager_told(shop: Shop):
    async with shop.app.session_factory() as session, session.begin():
        manager = await make_staff(session, "Менеджер", Role.MANAGER)
        client = await make_client(session, "Петров", manager=manager, phone=None)
        client.telegram_chat_id = 706
        session.add(Notification(key="b", kind=PING, client_id=client.id, payload={"text": "x"}))
    shop.api.known_chat(706)
    shop.api.known_chat(manager.telegram_id)
    shop.api.script("sendMessage", blocked())
    await shop.deliver_all()
    async with shop.app.session_factory() as session:
        refreshed = await session.get(Client, client.id)
        assert refreshed is not None and refreshed.telegram_blocked_at is not None
    (alert,) = shop.api.sent(manager.telegram_id)
    assert "Петров недоступен в Telegram" in alert.text
    first = (await shop.rows())[0]
    assert first.state is NotificationState.DROPPED


async def test_a_group_upgraded_to_a_supergroup_gets_it_at_its_new_id(shop: Shop):
    shop.api.known_chat(-100)
    shop.api.known_chat(-100200)
    shop.api.script("sendMessage", migrated(-100200))
    await shop.ping(-100, "to the group")
    await shop.ping(-100, "later", key="second", not_before=datetime.now(UTC) + timedelta(days=1))
    await shop.worker.drain(5)
    assert texts(shop.api.sent(-100200)) == ["to the group"]
    rows = await shop.rows()
    assert (rows[0].state, rows[0].chat_id) == (NotificationState.SENT, -100200)
    assert rows[1].chat_id == -100200  # the one still waiting follows the group too


# --- crashes and several workers -----------------------------------------------------------


async def test_a_crash_after_the_claim_loses_nothing(shop: Shop, dialect: str):
    for n in range(5):
        shop.api.known_chat(800 + n)
        await shop.ping(800 + n, f"n{n}")
    crashed = shop.with_policy(lease=0.5)
    claimed = await crashed._claim(10)  # claimed, then the process died before sending
    assert len(claimed) == 5
    assert {r.state for r in await shop.rows()} == {NotificationState.SENDING}
    restarted = shop.with_policy(lease=0.5)
    if restarted.single:
        assert await restarted.recover() == 5  # SQLite: one worker, its rows are due now
    else:
        await asyncio.sleep(0.6)  # PostgreSQL: another worker may live; wait for the lease
    await shop.deliver_all(restarted)
    for n in range(5):
        assert texts(shop.api.sent(800 + n)) == [f"n{n}"]


async def test_a_restart_does_not_send_again_what_was_sent(shop: Shop):
    shop.api.known_chat(810)
    await shop.ping(810, "once")
    await shop.deliver_all()
    again = shop.with_policy()
    if again.single:
        await again.recover()
    await again.drain(1)
    assert texts(shop.api.sent(810)) == ["once"]


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_two_workers_never_send_the_same_row(shop: Shop):
    chats = range(900, 960)
    for chat in chats:
        shop.api.known_chat(chat)
        await shop.ping(chat, f"c{chat}")
    first, second = shop.with_policy(batch_seconds=0.05), shop.with_policy(batch_seconds=0.05)
    await asyncio.gather(first.drain(10), second.drain(10))
    per_chat = Counter(int(c.params["chat_id"]) for c in shop.api.sent())
    assert per_chat == Counter({chat: 1 for chat in chats})


# --- the limits over many ------------------------------------------------------------------


async def test_a_thousand_notifications_exactly_once_within_the_limits(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
):
    """The bot itself (its scheduler runs the worker) delivers 1,000 queued notifications
    to 400 chats, is stopped halfway and started again: each arrives exactly once, never
    more than 25 in a second overall nor two in a second to one chat (the server's own
    timestamps)."""
    from tests.e2e_support import running_bot

    monkeypatch.setitem(alerts.RENDERERS, PING, render_ping)
    chats = [1000 + n for n in range(400)]
    settings = {"notify_in_bot": True, "quiet_hours": ""}
    async with running_bot(sqlite_url, **settings) as harness:
        for chat in chats:
            harness.api.known_chat(chat)
        async with harness.app.session_factory() as session, session.begin():
            for n in range(1000):
                chat = chats[n % len(chats)]
                session.add(
                    Notification(key=f"p{n}", kind=PING, chat_id=chat, payload={"text": f"#{n}"})
                )
        await harness.api.wait_until(lambda: len(harness.api.sent()) >= 300, timeout=30)
        api = harness.api
    # stopped mid-delivery; a new process on the same database and the same Bot API
    calls_before = list(api.calls)
    async with running_bot(sqlite_url, **settings) as harness:
        for chat in chats:
            harness.api.known_chat(chat)
        await harness.api.wait_until(
            lambda: len(harness.api.sent()) + len([c for c in calls_before if c.ok]) >= 1000,
            timeout=60,
        )
        await asyncio.sleep(1)  # anything extra would show now
        calls_after = list(harness.api.calls)
    sent = [c for c in calls_before + calls_after if c.method == "sendMessage" and c.ok]
    assert sorted(c.text or "" for c in sent) == sorted(f"#{n}" for n in range(1000))
    for calls in (calls_before, calls_after):
        moments = [c.wall for c in calls if c.method == "sendMessage"]
        assert busiest_window(moments) <= 26  # 25 a second, one more at a window's edge
        by_chat: dict[int, list[float]] = {}
        for c in calls:
            if c.method == "sendMessage":
                by_chat.setdefault(int(c.params["chat_id"]), []).append(c.at)
        for moments_of_chat in by_chat.values():
            gaps = [b - a for a, b in itertools.pairwise(moments_of_chat)]
            assert not gaps or min(gaps) >= 0.95


# --- the timed jobs ------------------------------------------------------------------------


async def test_the_timed_jobs_queue_reminders_once(shop: Shop):
    from bot.scheduler import Jobs
    from storage.models import Booking, TireSeason, TireSet, TireSetState

    tz = shop.app.settings.tz
    tomorrow = (datetime.now(tz) + timedelta(days=1)).replace(hour=11, minute=0, second=0)
    async with shop.app.session_factory() as session, session.begin():
        client = await make_client(session, "Клиент")
        car = await make_car(session, client)
        session.add(
            Booking(
                client_id=client.id,
                car_id=car.id,
                bay="Пост 1",
                starts_at=tomorrow.astimezone(UTC),
                ends_at=(tomorrow + timedelta(hours=1)).astimezone(UTC),
            )
        )
        session.add(
            TireSet(
                client_id=client.id,
                car_id=car.id,
                size="205/55 R16",
                season=TireSeason.WINTER,
                count=4,
                with_wheels=True,
                rack="A",
                shelf="1",
                state=TireSetState.STORED,
                stored_at=datetime.now(UTC),
            )
        )
    jobs = Jobs(shop.app.settings, shop.worker)
    for _ in range(2):
        await jobs.booking_reminders()
        await jobs.tire_season(TireSeason.WINTER)
        await jobs.tire_season(TireSeason.SUMMER)  # nobody stores summer tires
    kinds = sorted(r.kind for r in await shop.rows())
    assert kinds == [outbox.Kind.BOOKING_REMINDER, outbox.Kind.TIRE_SEASON]


async def test_a_link_request_alert_opens_the_decision(shop: Shop):
    from handlers.callbacks import LinkDecision
    from services import notify
    from storage.models import LinkRequest

    async with shop.app.session_factory() as session, session.begin():
        manager = await make_staff(session, "Менеджер", Role.MANAGER)
        request = LinkRequest(telegram_user_id=42, chat_id=42, phone="79451231010", name="Иван")
        session.add(request)
        await session.flush()
        assert await notify.link_requested(session, request) == 1
    shop.api.known_chat(manager.telegram_id)
    await shop.deliver_all()
    (alert,) = shop.api.sent(manager.telegram_id)
    assert "+7 (945) 123-10-10 (Иван)" in alert.text
    (button,) = alert.params["reply_markup"]["inline_keyboard"][0]
    assert button["text"] == "Решить"
    assert button["callback_data"] == LinkDecision(action="open", request_id=request.id).pack()


async def test_a_client_is_told_in_the_language_of_their_telegram(shop: Shop):
    async with shop.app.session_factory() as session, session.begin():
        client = await make_client(session, "Smith", phone=None)
        client.telegram_chat_id = 631
        client.locale = "en"
        order = await make_document(
            session, client, DocType.WORK_ORDER, state=DocState.COMPLETED, amount=0
        )
        await outbox.enqueue(
            session,
            outbox.Kind.ORDER_READY,
            f"order_ready:{order.id}",
            client_id=client.id,
            payload={"document_id": order.id},
        )
    shop.api.known_chat(631)
    await shop.deliver_all()
    (message,) = shop.api.sent(631)
    assert message.text.startswith("Good news: your car is ready, you can pick it up.")


async def test_a_big_digest_stays_one_valid_message(shop: Shop):
    """Sixty alerts about a client named like markup: one message, under Telegram's limit,
    the names shown literally, the rest counted."""
    async with shop.app.session_factory() as session, session.begin():
        manager = await make_staff(session, "Менеджер", Role.MANAGER)
        client = await make_client(session, '<b>Tom & "Jerry"</b>', manager=manager)
        for _ in range(60):
            event = await make_event(session, client, text="& <i>" + "длинный текст " * 12)
            await outbox.enqueue(
                session,
                outbox.Kind.NEW_EVENT,
                f"new_event:{event.id}:{manager.id}",
                staff_id=manager.id,
                payload={"event_id": event.id, "client_id": client.id},
                digestible=True,
            )
        chat = manager.telegram_id
    shop.api.known_chat(chat)
    await shop.deliver_all()
    (digest,) = shop.api.sent(chat)  # the fake refuses broken HTML and texts over 4096
    assert len(digest.params["text"]) <= 4096
    assert digest.text.startswith("Новых уведомлений: 60")
    assert '<b>Tom & "Jerry"</b>: Звонок — & <i>длинный' in digest.text
    assert "…и ещё" in digest.text
    assert {r.state for r in await shop.rows()} == {NotificationState.SENT}
