"""Who is told what, and when: the rules that turn a change into outbox rows.

Each function is called by the service that makes the change, in its transaction, after
the flush (ids exist). Nothing here sends; ``bot.delivery`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.outbox import Kind, enqueue
from storage.models import (
    Client,
    DocState,
    DocType,
    Document,
    Event,
    LinkRequest,
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


async def escalate_unprocessed(session: AsyncSession, *, now: datetime, after: timedelta) -> int:
    """Events unprocessed for longer than ``after``: every active admin is told, once per
    event (the key makes re-runs no-ops). Only events that crossed the line within the last
    :data:`ESCALATION_WINDOW` count, so switching the feature on does not flood the admins
    with years of backlog."""
    admins = await _office(session, (Role.ADMIN,))
    if not admins:
        return 0
    events = await session.execute(
        select(Event.id, Event.client_id)
        .where(
            Event.processed_at.is_(None),
            Event.created_at <= now - after,
            Event.created_at > now - after - ESCALATION_WINDOW,
        )
        .order_by(Event.created_at, Event.id)
        .limit(500)
    )
    queued = 0
    for event_id, client_id in events:
        for admin_id in admins:
            queued += await enqueue(
                session,
                Kind.ESCALATION,
                f"escalation:{event_id}:{admin_id}",
                staff_id=admin_id,
                payload={"event_id": event_id, "client_id": client_id},
                digestible=True,
            )
    return queued
