"""The seven client filters as SQL conditions on ``clients.id``."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, or_, select, true

from services.filters import ClientFilter, FilterContext
from storage.models import (
    Booking,
    BookingState,
    Client,
    DocState,
    DocType,
    Document,
    Event,
    Reservation,
)

MINE_DOC_TYPES = (DocType.CUSTOMER_ORDER, DocType.WORK_ORDER, DocType.REPAIR_REQUEST)


def _docs(doc_type: DocType, *states: DocState) -> ColumnElement[bool]:
    return Client.id.in_(
        select(Document.client_id).where(Document.doc_type == doc_type, Document.state.in_(states))
    )


def filter_condition(flt: ClientFilter, ctx: FilterContext) -> ColumnElement[bool]:
    if flt is ClientFilter.MINE:
        if ctx.staff_id is None:
            raise ValueError("the 'only mine' filter needs the staff member")
        me = ctx.staff_id
        return or_(
            Client.id.in_(
                select(Document.client_id).where(
                    Document.doc_type.in_(MINE_DOC_TYPES),
                    or_(Document.author_id == me, Document.manager_id == me),
                )
            ),
            Client.id.in_(select(Event.client_id).where(Event.author_id == me)),
        )
    if flt is ClientFilter.NEW_EVENTS:
        return Client.id.in_(select(Event.client_id).where(Event.processed_at.is_(None)))
    if flt is ClientFilter.OPEN_ORDERS:
        return _docs(DocType.CUSTOMER_ORDER, DocState.OPEN)
    if flt is ClientFilter.RESERVED:
        return Client.id.in_(
            select(Reservation.client_id).where(Reservation.released_at.is_(None))
        )
    if flt is ClientFilter.BOOKED_TODAY:
        return Client.id.in_(
            select(Booking.client_id).where(
                Booking.state != BookingState.CANCELLED,
                Booking.starts_at >= ctx.day_start,
                Booking.starts_at < ctx.day_end,
            )
        )
    if flt is ClientFilter.ON_SERVICE:
        return _docs(DocType.WORK_ORDER, DocState.IN_PROGRESS)
    if flt is ClientFilter.AWAITING_PICKUP:
        return _docs(DocType.WORK_ORDER, DocState.COMPLETED)
    raise ValueError(f"unknown filter {flt!r}")  # pragma: no cover


def filters_condition(filters: Iterable[ClientFilter], ctx: FilterContext) -> ColumnElement[bool]:
    conditions = [filter_condition(f, ctx) for f in sorted(filters)]
    return and_(*conditions) if conditions else true()
