"""Who is told what: the rules that queue notifications with the change, and quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from services import documents, messaging, notify
from services.messaging import CallOutcome
from services.outbox import Kind, parse_quiet_hours, quiet_until
from storage.models import DocState, DocType, Notification, Role
from tests.factories import make_client, make_document, make_event, make_staff

MOSCOW = ZoneInfo("Europe/Moscow")


async def queued(session) -> list[tuple[str, int | None, int | None]]:
    rows = await session.scalars(select(Notification).order_by(Notification.id))
    return [(r.kind, r.staff_id, r.client_id) for r in rows]


async def test_a_follow_up_call_tells_the_clients_manager_not_its_author(session):
    manager = await make_staff(session, "Менеджер", Role.MANAGER)
    master = await make_staff(session, "Мастер", Role.MASTER)
    client = await make_client(session, manager=manager)
    await messaging.log_call(session, client.id, master, CallOutcome.CALL_BACK)
    await messaging.log_call(session, client.id, master, CallOutcome.REACHED)  # processed
    await messaging.log_call(session, client.id, manager, CallOutcome.NO_ANSWER)  # own
    assert await queued(session) == [(Kind.NEW_EVENT, manager.id, None)]


async def test_without_a_manager_the_whole_office_is_told(session):
    managers = [await make_staff(session, f"М{n}", Role.MANAGER) for n in range(2)]
    admin = await make_staff(session, "Админ", Role.ADMIN)
    former = await make_staff(session, "Бывший", Role.MANAGER)
    former.active = False
    await make_staff(session, "Кассир", Role.CASHIER)
    client = await make_client(session)
    event = await make_event(session, client)
    assert await notify.event_created(session, event) == 3
    told = {staff_id for _kind, staff_id, _client in await queued(session)}
    assert told == {managers[0].id, managers[1].id, admin.id}


async def test_a_work_order_taken_in_and_completed_tells_the_client(session):
    master = await make_staff(session, "Мастер", Role.MASTER)
    client = await make_client(session)
    order = await make_document(session, client, DocType.WORK_ORDER, state=DocState.REQUEST)
    await documents.change_state(session, order.id, DocState.IN_PROGRESS, actor=master)
    await documents.change_state(session, order.id, DocState.COMPLETED, actor=master)
    await documents.change_state(session, order.id, DocState.IN_PROGRESS, actor=master)
    assert await queued(session) == [
        (Kind.ORDER_ACCEPTED, None, client.id),
        (Kind.ORDER_READY, None, client.id),
    ]


async def test_a_master_may_move_a_work_order_but_not_a_customer_order(session):
    master = await make_staff(session, "Мастер", Role.MASTER)
    client = await make_client(session)
    order = await make_document(session, client, DocType.CUSTOMER_ORDER, state=DocState.OPEN)
    with pytest.raises(documents.DocumentRefused) as refused:
        await documents.change_state(session, order.id, DocState.CLOSED, actor=master)
    assert refused.value.problem is documents.DocumentProblem.FORBIDDEN


async def test_a_new_repair_request_tells_the_office_but_not_who_made_it(session):
    manager = await make_staff(session, "Менеджер", Role.MANAGER)
    other = await make_staff(session, "Другой", Role.MANAGER)
    client = await make_client(session)
    await documents.create_repair_request(
        session, client_id=client.id, actor=manager, prefix="ЦОА", comment="стук"
    )
    assert await queued(session) == [(Kind.NEW_REQUEST, other.id, None)]


async def test_unprocessed_events_escalate_to_admins_once(session):
    admin = await make_staff(session, "Админ", Role.ADMIN)
    client = await make_client(session)
    now = datetime.now(UTC)
    old = await make_event(session, client, at=now - timedelta(hours=2))
    await make_event(session, client, at=now - timedelta(minutes=10))  # not yet
    await make_event(session, client, at=now - timedelta(hours=3), processed=True)
    await make_event(session, client, at=now - timedelta(days=3))  # backlog from before
    after = timedelta(hours=1)
    assert await notify.escalate_unprocessed(session, now=now, after=after) == 1
    assert await notify.escalate_unprocessed(session, now=now, after=after) == 0
    (row,) = await session.scalars(select(Notification))
    assert (row.kind, row.staff_id, row.payload["event_id"]) == (Kind.ESCALATION, admin.id, old.id)


async def test_a_backlog_larger_than_a_batch_escalates_in_one_run(session, monkeypatch):
    """Every unprocessed event of the window is reached, not the same first batch each run;
    events created at the same moment are told apart by id."""
    monkeypatch.setattr(notify, "ESCALATION_BATCH", 3)
    await make_staff(session, "Админ", Role.ADMIN)
    client = await make_client(session)
    now = datetime.now(UTC)
    same = now - timedelta(hours=2)
    events = [await make_event(session, client, at=same) for _ in range(4)]
    events += [await make_event(session, client, at=now - timedelta(hours=h)) for h in (3, 4, 5)]
    after = timedelta(hours=1)
    assert await notify.escalate_unprocessed(session, now=now, after=after) == 7
    assert await notify.escalate_unprocessed(session, now=now, after=after) == 0
    told = {row.payload["event_id"] for row in await session.scalars(select(Notification))}
    assert told == {e.id for e in events}


@pytest.mark.parametrize(
    ("local", "window", "until"),
    [
        ("22:30", "21:00-09:00", "tomorrow 09:00"),
        ("03:00", "21:00-09:00", "today 09:00"),
        ("09:00", "21:00-09:00", None),
        ("20:59", "21:00-09:00", None),
        ("13:30", "13:00-14:00", "today 14:00"),
        ("14:00", "13:00-14:00", None),
        ("03:00", "", None),
    ],
)
def test_quiet_hours(local: str, window: str, until: str | None):
    day = datetime(2026, 12, 3, tzinfo=MOSCOW)
    now = datetime.combine(day.date(), time.fromisoformat(local), tzinfo=MOSCOW)
    result = quiet_until(now.astimezone(UTC), parse_quiet_hours(window), MOSCOW)
    if until is None:
        assert result is None
        return
    when, clock = until.split()
    end_day = day.date() + timedelta(days=1 if when == "tomorrow" else 0)
    expected = datetime.combine(end_day, time.fromisoformat(clock), tzinfo=MOSCOW)
    assert result == expected.astimezone(UTC)


@pytest.mark.parametrize("bad", ["21-09", "25:00-09:00", "09:00-09:00", "nine-ten"])
def test_bad_quiet_hours_are_refused(bad: str):
    with pytest.raises(ValueError, match="quiet hours"):
        parse_quiet_hours(bad)
