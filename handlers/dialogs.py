"""Typed input of the related workstations (booking reason, arrival mileage and complaint,
tire set fields): one dialog at a time per chat, under one FSM data key.

As in ``handlers.contact``: the dialog remembers the screen trail's current screen when it
began; a typed message after the user moved elsewhere (or after ``TTL``) ends it and goes
on to the search (``SkipHandler``).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from aiogram import Bot
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import CallbackQuery, Message

from handlers import navigation, screens

KEY = "ws_dialog"
TTL = 30 * 60  # seconds


async def begin(
    state: FSMContext, step: State, kind: str, callback: CallbackQuery, **values: Any
) -> dict[str, Any]:
    data = await state.get_data()
    dialog = {
        "kind": kind,
        "nav": (data.get(navigation.NAV) or {}).get("cur"),
        "msg": callback.message.message_id if callback.message else None,
        **values,
    }
    await save(state, dialog, step)
    return dialog


async def save(state: FSMContext, dialog: dict[str, Any], step: State | None = None) -> None:
    dialog["at"] = time.time()
    await state.update_data({KEY: dialog})
    if step is not None:
        await state.set_state(step)


async def current(state: FSMContext, kind: str) -> dict[str, Any] | None:
    """The open dialog of ``kind`` (for a press), or None."""
    dialog = (await state.get_data()).get(KEY)
    if not isinstance(dialog, dict) or dialog.get("kind") != kind:
        return None
    if time.time() - float(dialog.get("at") or 0) > TTL:
        return None
    return dict(dialog)


async def end(state: FSMContext) -> None:
    if await state.get_state() is not None:
        await state.set_state(None)
    if (await state.get_data()).get(KEY) is not None:
        await state.update_data({KEY: None})


async def live(state: FSMContext, kind: str) -> dict[str, Any]:
    """The dialog a typed message is for; else the dialog ends and the text is searched."""
    data = await state.get_data()
    dialog = data.get(KEY)
    cur = (data.get(navigation.NAV) or {}).get("cur")
    if (
        not isinstance(dialog, dict)
        or dialog.get("kind") != kind
        or dialog.get("nav") != cur
        or time.time() - float(dialog.get("at") or 0) > TTL
    ):
        await end(state)
        raise SkipHandler()
    return dict(dialog)


async def reprompt(
    message: Message, state: FSMContext, dialog: dict[str, Any], screen: screens.Screen
) -> None:
    """Answer typed input with the next step; the previous step's buttons go away."""
    await retire(message.bot, message.chat.id, dialog.get("msg"))
    sent = await message.answer(screen.text, reply_markup=screen.markup)
    dialog["msg"] = sent.message_id
    await save(state, dialog)


async def retire(bot: Bot | None, chat_id: int, message_id: int | None) -> None:
    if bot is None or not message_id:
        return
    with contextlib.suppress(TelegramAPIError):
        await bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id)


async def not_a_command(message: Message) -> bool:
    """A dialog's answer, not a command (a coroutine: aiogram runs a plain function filter
    in a worker thread)."""
    return not (message.text or "").startswith("/")
