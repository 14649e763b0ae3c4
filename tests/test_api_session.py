"""The Bot API session (bot.api_session): JSON bodies, except for uploads."""

from __future__ import annotations

import json

from aiogram import Bot
from aiogram.methods import SendDocument, SendMessage
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup
from aiohttp import BytesPayload, FormData

from bot.api_session import JsonBodySession

TOKEN = "123456:TEST-token-not-real"


def test_a_message_goes_as_json_with_its_keyboard_as_an_object():
    session = JsonBodySession()
    bot = Bot(TOKEN, session=session)
    button = InlineKeyboardButton(text="Иванов <b>", callback_data="cl:5")
    method = SendMessage(
        chat_id=7,
        text="Клиент «Иванов» & сын",
        reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]]),
    )
    body = session.build_form_data(bot, method)
    assert isinstance(body, BytesPayload) and body.content_type == "application/json"
    sent = json.loads(body._value)
    assert sent["chat_id"] == 7 and sent["text"] == "Клиент «Иванов» & сын"
    assert sent["reply_markup"] == {
        "inline_keyboard": [[{"text": "Иванов <b>", "callback_data": "cl:5"}]]
    }


def test_a_file_still_goes_as_a_form():
    session = JsonBodySession()
    bot = Bot(TOKEN, session=session)
    method = SendDocument(chat_id=7, document=BufferedInputFile(b"a;b\n", filename="x.csv"))
    assert isinstance(session.build_form_data(bot, method), FormData)
