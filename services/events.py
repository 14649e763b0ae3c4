"""The contact log (События): every interaction with a client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import Direction, Event, EventKind, Staff


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    kind: EventKind
    direction: Direction
    text: str
    result: str | None
    created_at: datetime
    author: str | None
    car_id: int | None
    processed_at: datetime | None
    processed_by: str | None

    @property
    def is_new(self) -> bool:
        return self.processed_at is None


async def list_events(
    session: AsyncSession, client_id: int, *, offset: int = 0, limit: int = 10
) -> tuple[list[EventRow], int]:
    """The client's events, newest first, one page, and the total."""
    author = aliased(Staff)
    processor = aliased(Staff)
    total = await session.scalar(
        select(func.count()).select_from(Event).where(Event.client_id == client_id)
    )
    rows = await session.execute(
        select(
            Event.id,
            Event.kind,
            Event.direction,
            Event.text,
            Event.result,
            Event.created_at,
            author.name,
            Event.car_id,
            Event.processed_at,
            processor.name,
        )
        .outerjoin(author, author.id == Event.author_id)
        .outerjoin(processor, processor.id == Event.processed_by_id)
        .where(Event.client_id == client_id)
        .order_by(Event.created_at.desc(), Event.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [EventRow(*tuple(row)) for row in rows], int(total or 0)
