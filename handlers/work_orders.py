"""Documents moved on from their screen. A work order: taken into work, done (the car is
ready), issued; the client is told by the outbox (``services.notify``), in the same
commit. A customer order or repair request: closed, reopened or cancelled by the office
(cancelling asks first; an order with shipped goods cannot be cancelled)."""

from __future__ import annotations

from aiogram import Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import IsStaff
from handlers.callbacks import DocumentState, OpenDocument, WorkOrderState
from handlers.fmt import q
from handlers.navigation import refuse, screen_context, show
from handlers.payments import document_problem
from handlers.reach import client_told
from handlers.screens import (
    OFFICE_MOVES,
    Screen,
    doc_type_name,
    keyboard,
    render,
    state_name,
)
from services import documents
from services.access import Permission, can
from services.documents import DocumentProblem, DocumentRefused
from services.search import SearchService
from storage.models import DocState, DocType, Document, Staff

MOVES = frozenset({DocState.IN_PROGRESS, DocState.COMPLETED, DocState.CLOSED})
OFFICE_STATES = frozenset({DocState.OPEN, DocState.CLOSED, DocState.CANCELLED})
TOLD = frozenset({DocState.IN_PROGRESS, DocState.COMPLETED})  # services.notify tells these


def make_router() -> Router:
    router = Router(name="work-orders")
    router.callback_query.filter(IsStaff())
    router.callback_query.register(move_work_order, WorkOrderState.filter())
    router.callback_query.register(move_document, DocumentState.filter())
    return router


async def move_work_order(
    callback: CallbackQuery,
    callback_data: WorkOrderState,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    target = next((s for s in MOVES if s.value == callback_data.state), None)
    if target is None or not can(staff, Permission.WORK_ORDERS):
        reason = "forbidden" if target is not None else "malformed"
        await refuse(callback, session, staff, reason=reason, detail="work order")
        return
    try:
        doc = await documents.change_state(session, callback_data.document_id, target, actor=staff)
        if DocType(doc.doc_type) is not DocType.WORK_ORDER:
            raise DocumentRefused(DocumentProblem.BAD_TRANSITION, "not a work order")
        await session.commit()
    except DocumentRefused as refused:
        await _refused(callback, session, staff, refused, "work order")
        return
    said = _("Work order {number}: {state}.").format(
        number=doc.number, state=state_name(DocType.WORK_ORDER, target)
    )
    if target in TOLD and doc.client_id is not None:
        # The client hears of it in the bot, or whoever pressed knows to call.
        said += " " + await client_told(session, doc.client_id)
    await callback.answer(said)
    ctx = screen_context(session, staff, settings, search_service, state)
    await show(callback, await render(OpenDocument(document_id=doc.id), ctx))


async def move_document(
    callback: CallbackQuery,
    callback_data: DocumentState,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    target = next((s for s in OFFICE_STATES if s.value == callback_data.state), None)
    if target is None or not can(staff, Permission.DOCUMENTS):
        reason = "forbidden" if target is not None else "malformed"
        await refuse(callback, session, staff, reason=reason, detail="document state")
        return
    doc = await session.get(Document, callback_data.document_id, populate_existing=True)
    if doc is None or DocType(doc.doc_type) not in OFFICE_MOVES:
        await refuse(callback, session, staff, reason="stale", detail="document state")
        return
    kind = DocType(doc.doc_type)
    if target is DocState.CANCELLED and not callback_data.sure:
        # Cancelling takes the amount out of the client's debt: ask once.
        if not documents.can_transition(kind, DocState(doc.state), target):
            await refuse(callback, session, staff, reason="stale", detail="document state")
            return
        await callback.answer()
        text = _("Cancel {document} {number}?").format(
            document=doc_type_name(kind), number=q(doc.number)
        )
        text += "\n" + _("Its amount leaves the client's debt; what was paid stays as credit.")
        sure = DocumentState(document_id=doc.id, state=target.value, sure=True)
        rows = [(_("✖ Yes, cancel"), sure)], [(_("« Back"), OpenDocument(document_id=doc.id))]
        await show(callback, Screen(text, keyboard(*rows)))
        return
    try:
        doc = await documents.change_state(session, doc.id, target, actor=staff)
        await session.commit()
    except DocumentRefused as refused:
        await _refused(callback, session, staff, refused, "document state")
        return
    await callback.answer(
        _("{document} {number}: {state}.").format(
            document=doc_type_name(kind), number=doc.number, state=state_name(kind, target)
        )
    )
    ctx = screen_context(session, staff, settings, search_service, state)
    await show(callback, await render(OpenDocument(document_id=doc.id), ctx))


async def _refused(
    callback: CallbackQuery,
    session: AsyncSession,
    staff: Staff,
    refused: DocumentRefused,
    detail: str,
) -> None:
    """A move the service refused, after the rollback: someone moved the document first or
    the button was not ours (stale), the role may not (forbidden), else the reason (an
    order with shipped goods is not cancelled)."""
    await session.rollback()
    if refused.problem in (DocumentProblem.NOT_FOUND, DocumentProblem.BAD_TRANSITION):
        await refuse(callback, session, staff, reason="stale", detail=detail)
    elif refused.problem is DocumentProblem.FORBIDDEN:
        await refuse(callback, session, staff, reason="forbidden", detail=detail)
    else:
        await callback.answer(document_problem(refused), show_alert=True)
