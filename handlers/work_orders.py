"""A work order moved on from its screen: taken into work, done (the car is ready),
issued. The client is told by the outbox (``services.notify``), in the same commit."""

from __future__ import annotations

from aiogram import Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import IsStaff
from handlers.callbacks import OpenDocument, WorkOrderState
from handlers.navigation import refuse, screen_context, show
from handlers.reach import client_told
from handlers.screens import render, state_name
from services import documents
from services.access import Permission, can
from services.documents import DocumentProblem, DocumentRefused
from services.search import SearchService
from storage.models import DocState, DocType, Staff

MOVES = frozenset({DocState.IN_PROGRESS, DocState.COMPLETED, DocState.CLOSED})
TOLD = frozenset({DocState.IN_PROGRESS, DocState.COMPLETED})  # services.notify tells these


def make_router() -> Router:
    router = Router(name="work-orders")
    router.callback_query.filter(IsStaff())
    router.callback_query.register(move_work_order, WorkOrderState.filter())
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
        await session.rollback()
        if refused.problem in (DocumentProblem.NOT_FOUND, DocumentProblem.BAD_TRANSITION):
            # Someone moved it first, or the button was not ours: the screen is stale.
            await refuse(callback, session, staff, reason="stale", detail="work order")
        else:
            await refuse(callback, session, staff, reason="forbidden", detail="work order")
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
