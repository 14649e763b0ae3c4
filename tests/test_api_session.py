"""The Bot API session (bot.api_session): JSON bodies, except for uploads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.enums import ParseMode
from aiogram.methods import (
    AnswerCallbackQuery,
    BanChatMember,
    EditMessageText,
    SendDocument,
    SendInvoice,
    SendMessage,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    LabeledPrice,
    LinkPreviewOptions,
    ReplyKeyboardMarkup,
    ReplyParameters,
)
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


def _aiogram_values(session: JsonBodySession, bot: Bot, method: Any) -> dict[str, Any]:
    """What aiogram's own form would carry: every field prepared, ``None`` dropped."""
    values: dict[str, Any] = {}
    for key, value in method.model_dump(warnings=False).items():
        prepared = session.prepare_value(value, bot=bot, files={}, _dumps_json=False)
        if prepared is not None:
            values[key] = prepared
    return values


@pytest.mark.parametrize(
    "method",
    [
        SendMessage(chat_id=7, text="<b>x</b>"),  # parse_mode: the bot's default
        SendMessage(
            chat_id=-100,
            text="x",
            parse_mode=None,
            reply_parameters=ReplyParameters(message_id=3),
            link_preview_options=LinkPreviewOptions(is_disabled=True),
            reply_markup=ReplyKeyboardMarkup(
                keyboard=[[KeyboardButton(text="☎", request_contact=True)]],
                resize_keyboard=True,
            ),
        ),
        EditMessageText(
            chat_id=7,
            message_id=9,
            text="Клиент",
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[
                    [InlineKeyboardButton(text="Иванов", callback_data="cl:5:i:0")],
                    [InlineKeyboardButton(text="site", url="https://example.org/a?b=1")],
                ]
            ),
        ),
        AnswerCallbackQuery(callback_query_id="q", text="out of date", show_alert=False),
        SendInvoice(
            chat_id=7,
            title="Order",
            description="Pay",
            payload="p:1",
            currency="RUB",
            prices=[LabeledPrice(label="Works", amount=150000)],
            provider_token="",
        ),
        BanChatMember(chat_id=7, user_id=8, until_date=datetime(2030, 1, 1, tzinfo=UTC)),
    ],
    ids=lambda method: type(method).__name__,
)
def test_the_json_body_carries_what_aiograms_form_would(method: Any):
    session = JsonBodySession()
    bot = Bot(
        TOKEN,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=None),
    )
    body = session.build_form_data(bot, method)
    assert isinstance(body, BytesPayload)
    assert json.loads(body._value) == _aiogram_values(session, bot, method)
