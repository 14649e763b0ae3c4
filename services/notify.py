"""Who is told what, and when: the rules that turn a change into outbox rows.

Each function is called by the service that makes the change, in its transaction, after
the flush (ids exist). Nothing here sends; ``bot.delivery`` does.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services import ledger
from services.outbox import Kind, enqueue
from storage.models import (
    Car,
    Client,
    Direction,
    DocState,
    DocType,
    Document,
    Event,
    EventKind,
    LinkRequest,
    Notification,
    Role,
    Staff,
)

OFFICE_ROLES = (Role.MANAGER, Role.ADMIN)


async def _office(session: AsyncSession, roles: Sequence[Role] = OFFICE_ROLES) -> list[int]:
    """Active staff with one of ``roles``."""
    rows = await session.scalars(
        select(Staff.id).where(Staff.active.is_(True), Staff.role.in_(list(roles)))
    )
    return list(rows)


async def responsible(session: AsyncSession, client_id: int) -> list[int]:
    """The client's manager when one is set and active, else every active manager and
    admin: someone is always told."""
    manager_id = await session.scalar(
        select(Staff.id)
        .join(Client, Client.manager_id == Staff.id)
        .where(Client.id == client_id, Staff.active.is_(True))
    )
    if manager_id is not None:
        return [manager_id]
    return await _office(session)


async def event_created(session: AsyncSession, event: Event) -> int:
    """A new unprocessed event: its client's manager is told (not the one who wrote it).
    Returns how many notifications were queued."""
    if event.processed_at is not None:
        return 0
    queued = 0
    for staff_id in await responsible(session, event.client_id):
        if staff_id == event.author_id:
            continue
        queued += await enqueue(
            session,
            Kind.NEW_EVENT,
            f"new_event:{event.id}:{staff_id}",
            staff_id=staff_id,
            payload={"event_id": event.id, "client_id": event.client_id},
            digestible=True,
        )
    return queued


async def document_changed(
    session: AsyncSession, doc: Document, old_state: DocState | None, *, actor_id: int | None
) -> int:
    """A document created (``old_state`` None) or moved to another state.

    Work order in progress → the client is told it was taken in; completed → the car is
    ready (with the amount due). A new repair request → the client's manager."""
    doc_type = DocType(doc.doc_type)
    state = DocState(doc.state)
    if old_state is not None and DocState(old_state) is state:
        return 0
    payload = {"document_id": doc.id}
    if doc_type is DocType.WORK_ORDER and state is DocState.IN_PROGRESS:
        return int(
            await enqueue(
                session,
                Kind.ORDER_ACCEPTED,
                f"order_accepted:{doc.id}",
                client_id=doc.client_id,
                payload=payload,
            )
        )
    if doc_type is DocType.WORK_ORDER and state is DocState.COMPLETED:
        # A completed order can go back to work and be completed again: each time is news.
        version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        return int(
            await enqueue(
                session,
                Kind.ORDER_READY,
                f"order_ready:{doc.id}:{version}",
                client_id=doc.client_id,
                payload=payload,
            )
        )
    if doc_type is DocType.REPAIR_REQUEST and old_state is None:
        queued = 0
        for staff_id in await responsible(session, doc.client_id):
            if staff_id == actor_id:
                continue
            queued += await enqueue(
                session,
                Kind.NEW_REQUEST,
                f"new_request:{doc.id}:{staff_id}",
                staff_id=staff_id,
                payload=payload | {"client_id": doc.client_id},
                digestible=True,
            )
        return queued
    return 0


class Reach(enum.StrEnum):
    """Whether a message to a client reaches them in the bot, and if not, why."""

    IN_BOT = "in_bot"
    NOT_LINKED = "not_linked"  # no Telegram chat linked
    OPTED_OUT = "opted_out"  # /stop
    BLOCKED = "blocked"  # the chat answered 403


def reach_of(client: Any) -> Reach:
    """The one rule for a client (or a row with its ``telegram_chat_id``,
    ``notifications_off`` and ``telegram_blocked_at``; None: no client): the delivery sends
    only ``IN_BOT``, and whatever would be dropped is refused or told to staff instead."""
    if client is None or client.telegram_chat_id is None:
        return Reach.NOT_LINKED
    if client.notifications_off:
        return Reach.OPTED_OUT
    if client.telegram_blocked_at is not None:
        return Reach.BLOCKED
    return Reach.IN_BOT


async def client_reach(session: AsyncSession, client_id: int) -> Reach:
    """:func:`reach_of` the client: staff are told to call when it is not ``IN_BOT``."""
    row = (
        await session.execute(
            select(
                Client.telegram_chat_id, Client.notifications_off, Client.telegram_blocked_at
            ).where(Client.id == client_id)
        )
    ).one_or_none()
    return reach_of(row)


async def link_requested(session: AsyncSession, request: LinkRequest) -> int:
    """A shared phone matched several clients: managers and admins decide."""
    queued = 0
    for staff_id in await _office(session):
        queued += await enqueue(
            session,
            Kind.LINK_REQUEST,
            f"link_request:{request.id}:{staff_id}",
            staff_id=staff_id,
            payload={"link_request_id": request.id},
        )
    return queued


async def client_unreachable(session: AsyncSession, client_id: int, *, at: datetime) -> int:
    """Telegram refused the client's chat (403): the responsible manager is told once per
    blocking."""
    queued = 0
    for staff_id in await responsible(session, client_id):
        queued += await enqueue(
            session,
            Kind.UNREACHABLE,
            f"unreachable:{client_id}:{at.isoformat()}:{staff_id}",
            staff_id=staff_id,
            payload={"client_id": client_id},
            digestible=True,
        )
    return queued


ESCALATION_WINDOW = timedelta(days=1)
ESCALATION_BATCH = 500


async def escalate_unprocessed(session: AsyncSession, *, now: datetime, after: timedelta) -> int:
    """Events unprocessed for longer than ``after``: every active admin is told, once per
    event (the key makes re-runs no-ops). Only events that crossed the line within the last
    :data:`ESCALATION_WINDOW` count, so switching the feature on does not flood the admins
    with years of backlog."""
    admins = await _office(session, (Role.ADMIN,))
    if not admins:
        return 0
    queued = 0
    upper, lower = now - after, now - after - ESCALATION_WINDOW
    after_key: tuple[datetime, int] | None = None
    while True:
        # In batches through the whole window, oldest first (ix_events_unprocessed_created):
        # a backlog larger than one batch is reached too, not the same first rows each run.
        stmt = (
            select(Event.id, Event.client_id, Event.created_at)
            .where(
                Event.processed_at.is_(None),
                Event.created_at <= upper,
                Event.created_at > lower,
            )
            .order_by(Event.created_at, Event.id)
            .limit(ESCALATION_BATCH)
        )
        if after_key is not None:
            stmt = stmt.where(tuple_(Event.created_at, Event.id) > tuple_(*after_key))
        batch = (await session.execute(stmt)).all()
        for event_id, client_id, _created in batch:
            for admin_id in admins:
                queued += await enqueue(
                    session,
                    Kind.ESCALATION,
                    f"escalation:{event_id}:{admin_id}",
                    staff_id=admin_id,
                    payload={"event_id": event_id, "client_id": client_id},
                    digestible=True,
                )
        if len(batch) < ESCALATION_BATCH:
            break
        after_key = (batch[-1].created_at, batch[-1].id)
    return queued


# --- what an alert tells: read when it is sent ------------------------------------------


def _values(row: Any) -> tuple[Any, ...]:
    return tuple(row)


@dataclass(frozen=True, slots=True)
class EventFacts:
    event_id: int
    client_id: int
    client_name: str
    kind: EventKind
    direction: Direction
    text: str
    created_at: datetime
    processed: bool


async def event_facts(session: AsyncSession, event_id: int) -> EventFacts | None:
    row = (
        await session.execute(
            select(
                Event.id,
                Event.client_id,
                Client.name,
                Event.kind,
                Event.direction,
                Event.text,
                Event.created_at,
                Event.processed_at.is_not(None),
            )
            .join(Client, Client.id == Event.client_id)
            .where(Event.id == event_id)
        )
    ).one_or_none()
    return EventFacts(*_values(row)) if row is not None else None


@dataclass(frozen=True, slots=True)
class DocumentFacts:
    document_id: int
    doc_type: DocType
    number: str
    state: DocState
    date: datetime
    client_id: int
    client_name: str
    car_name: str | None
    plate: str | None
    comment: str | None
    total: int
    debt: int


async def document_facts(session: AsyncSession, document_id: int) -> DocumentFacts | None:
    row = (
        await session.execute(
            select(
                Document.id,
                Document.doc_type,
                Document.number,
                Document.state,
                Document.date,
                Document.client_id,
                Client.name,
                Car.name,
                Car.plate,
                Document.comment,
            )
            .join(Client, Client.id == Document.client_id)
            .outerjoin(Car, Car.id == Document.car_id)
            .where(Document.id == document_id)
        )
    ).one_or_none()
    if row is None:
        return None
    balance = await ledger.document_balance(session, document_id)
    total = balance.total if balance is not None else 0
    debt = max(balance.debt, 0) if balance is not None else 0
    values = (*_values(row), total, debt)
    return DocumentFacts(*values)


@dataclass(frozen=True, slots=True)
class ClientFacts:
    client_id: int
    name: str
    blocked: bool


async def client_facts(session: AsyncSession, client_id: int) -> ClientFacts | None:
    row = (
        await session.execute(
            select(Client.id, Client.name, Client.telegram_blocked_at.is_not(None)).where(
                Client.id == client_id
            )
        )
    ).one_or_none()
    return ClientFacts(*_values(row)) if row is not None else None


async def link_request_facts(session: AsyncSession, request_id: int) -> LinkRequest | None:
    return await session.get(LinkRequest, request_id)


async def notification_facts(session: AsyncSession, notification_id: int) -> Notification | None:
    return await session.get(Notification, notification_id)
