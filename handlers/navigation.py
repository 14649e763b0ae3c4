"""Moving between screens: one message, edited in place, with Back.

The current screen and the way back are kept per chat in the FSM storage as packed
callback data. Every press re-checks the role and re-reads the object (``handlers.screens``);
a forged, stale or malformed press is answered "this button is out of date" and audited.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import ONLY_READS, IsStaff, Magic
from handlers.callbacks import Back
from handlers.screens import RENDERERS, Forbidden, Screen, ScreenContext, Stale, render
from services import audit
from services.search import SearchService
from storage.db import begin_reads
from storage.models import Staff

logger = logging.getLogger(__name__)

MAX_DEPTH = 20
NAV = "nav"


def make_router() -> Router:
    router = Router(name="navigation")
    router.callback_query.filter(IsStaff())
    for cls in RENDERERS:
        router.callback_query.register(on_screen, cls.filter(), flags={ONLY_READS: True})
    router.callback_query.register(on_back, Back.filter())
    return router


def make_fallback_router() -> Router:
    """Last: any press nobody understood (malformed, from an old version, forged)."""
    router = Router(name="stale-buttons")
    router.callback_query.filter(IsStaff())
    router.callback_query.register(on_unknown_press, Magic(F.data))
    router.callback_query.register(on_unknown_press)
    return router


def _key(cb: CallbackData) -> str:
    """Screens of the same object (tabs, pages) replace each other instead of stacking."""
    packed = cb.pack().split(":")
    return ":".join(packed[:2])


async def _nav(state: FSMContext) -> dict[str, Any]:
    data = await state.get_data()
    return dict(data.get(NAV) or {"cur": None, "stack": []})


def trail(current: CallbackData | None) -> dict[str, Any]:
    """The FSM data of a new trail starting at ``current``."""
    return {NAV: {"cur": current.pack() if current else None, "stack": []}}


async def reset(state: FSMContext, current: CallbackData | None) -> None:
    """A new message starts a new trail (a search, a command)."""
    await state.update_data(trail(current))


async def _push(state: FSMContext, cb: CallbackData) -> None:
    nav = await _nav(state)
    cur = nav.get("cur")
    stack: list[str] = list(nav.get("stack") or [])
    if cur and _key(_unpack(cur) or cb) != _key(cb):
        stack.append(cur)
        stack = stack[-MAX_DEPTH:]
    await state.update_data({NAV: {"cur": cb.pack(), "stack": stack}})


def _unpack(packed: str) -> CallbackData | None:
    prefix = packed.split(":", 1)[0]
    for cls in RENDERERS:
        if cls.__prefix__ == prefix:
            try:
                return cls.unpack(packed)
            except (TypeError, ValueError):
                return None
    return None


def screen_context(
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> ScreenContext:
    return ScreenContext(session, staff, settings, search_service, state)


async def on_screen(
    callback: CallbackQuery,
    callback_data: CallbackData,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    ctx = screen_context(session, staff, settings, search_service, state)
    await begin_reads(session)  # a screen only reads
    try:
        screen = await render(callback_data, ctx)
    except (Forbidden, Stale) as exc:
        await refuse(callback, session, staff, reason=type(exc).__name__.lower(), detail=str(exc))
        return
    await callback.answer()
    await _push(state, callback_data)
    await show(callback, screen)


async def on_back(
    callback: CallbackQuery,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    nav = await _nav(state)
    stack: list[str] = list(nav.get("stack") or [])
    ctx = screen_context(session, staff, settings, search_service, state)
    while stack:
        packed = stack.pop()
        cb = _unpack(packed)
        if cb is None:
            continue
        try:
            screen = await render(cb, ctx)
        except (Forbidden, Stale):
            continue  # gone since, or no longer allowed: step further back
        await state.update_data({NAV: {"cur": packed, "stack": stack}})
        await callback.answer()
        await show(callback, screen)
        return
    await state.update_data({NAV: {"cur": None, "stack": []}})
    await callback.answer(_("Nothing to go back to. Send a plate, phone or name to search."))


async def on_unknown_press(callback: CallbackQuery, session: AsyncSession, staff: Staff) -> None:
    await refuse(callback, session, staff, reason="malformed", detail="")


async def refuse(
    callback: CallbackQuery, session: AsyncSession, staff: Staff, *, reason: str, detail: str
) -> None:
    """Answer "out of date" and write the press to the audit log; never raises."""
    try:
        if inspect(staff).expired_attributes:
            await session.refresh(staff)  # a rollback before the refusal expired it
        audit.record(
            session,
            "button.refused",
            actor=staff,
            entity="callback",
            details={"reason": reason, "what": detail, "data": (callback.data or "")[:64]},
        )
        await session.commit()
    except Exception:  # the answer below must go out whatever the database says
        logger.exception("could not audit a refused press")
    await callback.answer(_("This button is out of date."), show_alert=True)


async def show(callback: CallbackQuery, screen: Screen) -> None:
    """Edit the pressed message into the new screen (a new message if it can't be)."""
    message = callback.message
    if isinstance(message, Message):
        try:
            await message.edit_text(screen.text, reply_markup=screen.markup)
            return
        except TelegramBadRequest as exc:
            if "not modified" in str(exc):
                return
            logger.info("cannot edit the message, sending a new one: %s", exc)
    if callback.message is not None:
        await callback.bot.send_message(  # type: ignore[union-attr]
            callback.message.chat.id, screen.text, reply_markup=screen.markup
        )
