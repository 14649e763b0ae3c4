"""The last word on a failed update: log it, tell the user to try again, never raise."""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import ErrorEvent, Message, Update
from aiogram.utils.i18n import gettext as _

logger = logging.getLogger(__name__)


def make_router() -> Router:
    router = Router(name="errors")
    router.errors.register(on_error)
    return router


async def on_error(event: ErrorEvent, bot: Bot) -> bool:
    exc, update = event.exception, event.update
    if isinstance(exc, TelegramForbiddenError):
        # Blocked by the user or removed from the chat: nobody to tell.
        logger.info("update %s: Telegram refused the answer: %s", update.update_id, exc)
        return True
    # The bot token never reaches the log: bot.app.redact_token_in_logs filters every
    # record, and the message here carries no URL.
    logger.error("update %s failed: %s", update.update_id, type(exc).__name__, exc_info=exc)
    try:
        await _tell_user(update, bot)
    except Exception:  # the error handler itself must not fail
        logger.warning("update %s: could not tell the user", update.update_id, exc_info=True)
    return True


async def _tell_user(update: Update, bot: Bot) -> None:
    text = _("Something went wrong. Please try again.")
    chat_id: int | None = None
    if update.callback_query is not None:
        query = update.callback_query
        try:
            await query.answer(text, show_alert=True)
            return
        except TelegramBadRequest:  # the handler had answered it already
            chat_id = query.message.chat.id if query.message is not None else None
    else:
        message = update.message or update.edited_message
        if isinstance(message, Message):
            chat_id = message.chat.id
    if chat_id is not None:
        await bot.send_message(chat_id, text)
