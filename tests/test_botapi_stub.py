"""The Bot API stand-in, driven by a real aiogram Bot over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice
from aiohttp import web

from tests.botapi import (
    SECRET_HEADER,
    FakeBotAPI,
    Scripted,
    blocked,
    delayed,
    html_problem,
    migrated,
    plain,
    retry_after,
    server_error,
)

TOKEN = "42424242:AAE-stub-test-token_abcdefghijklmnopq"


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(TOKEN) as server:
        yield server


def make_bot(api: FakeBotAPI, token: str = TOKEN) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(api.base_url))
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    client = make_bot(api)
    yield client
    await client.session.close()


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=d, callback_data=d) for d in data]]
    )


async def test_get_me_and_a_wrong_token(api: FakeBotAPI, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (42424242, True, "ccbot_test_bot")

    intruder = make_bot(api, "42424242:AAE-another-token_abcdefghijklmnopqrs")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await intruder.get_me()
    finally:
        await intruder.session.close()
    assert [c.status for c in api.calls] == [200, 401]


async def test_send_message_numbers_per_chat_and_echoes_the_message(
    api: FakeBotAPI, bot: Bot
) -> None:
    api.message(7, "hi")  # message 1 in chat 7, from the user
    api.known_chat(8)

    first = await bot.send_message(7, "<b>Hello</b>", reply_markup=keyboard("a:1"))
    second = await bot.send_message(7, "again")
    other = await bot.send_message(8, "elsewhere")

    assert (first.message_id, second.message_id, other.message_id) == (2, 3, 1)
    assert first.chat.id == 7 and first.chat.type == "private"
    assert first.from_user is not None and first.from_user.id == bot.id
    assert first.text == "<b>Hello</b>" and first.date.timestamp() > 0
    assert first.reply_markup is not None
    assert first.reply_markup.inline_keyboard[0][0].callback_data == "a:1"

    call = api.sent(7)[0]
    assert call.params["chat_id"] == 7  # parsed from the form, not the string "7"
    assert call.params["parse_mode"] == "HTML"
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "a:1"
    assert call.text == "Hello" and call.at <= time.monotonic() and call.wall > 0
    assert [m.plain_text for m in api.chat(7)] == ["hi", "Hello", "again"]
    assert api.bot_messages(7)[0].button("a:1")["callback_data"] == "a:1"


async def test_text_looking_like_json_stays_text(api: FakeBotAPI, bot: Bot) -> None:
    api.known_chat(5)
    await bot.send_message(5, "123")
    await bot.send_message(5, "true")
    assert [c.params["text"] for c in api.sent(5)] == ["123", "true"]


async def test_long_polling_waits_for_an_update_and_honours_offsets(
    api: FakeBotAPI, bot: Bot
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await api.wait_polling()
    first = api.message(1, "/start", language_code="en")
    updates = await poll
    assert [u.update_id for u in updates] == [first]
    message = updates[0].message
    assert message is not None and message.text == "/start"
    assert message.from_user is not None and message.from_user.language_code == "en"
    assert message.entities is not None and message.entities[0].type == "bot_command"

    second, third = api.message(1, "a"), api.message(2, "b")
    again = await bot.get_updates(timeout=0)  # nothing confirmed yet: all three
    assert [u.update_id for u in again] == [first, second, third]

    confirmed = await bot.get_updates(offset=second, timeout=0)
    assert [u.update_id for u in confirmed] == [second, third]
    assert [u["update_id"] for u in api.pending] == [second, third]

    assert await bot.get_updates(offset=third + 1, timeout=0) == []
    assert api.pending == []


async def test_long_poll_returns_nothing_after_its_timeout(api: FakeBotAPI, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert 0.9 <= time.monotonic() - started < 5


async def test_closing_answers_a_waiting_long_poll_at_once() -> None:
    server = await FakeBotAPI(TOKEN).start()
    client = make_bot(server)
    try:
        poll = asyncio.create_task(client.get_updates(timeout=30))
        await server.wait_polling()
        started = time.monotonic()
        await server.close()
        assert await poll == []
        assert time.monotonic() - started < 5
    finally:
        await client.session.close()


async def test_wait_for_waits_and_reports_what_it_saw(api: FakeBotAPI, bot: Bot) -> None:
    api.known_chat(3)

    async def later() -> None:
        await bot.send_message(3, "one")
        await bot.send_message(3, "two")

    task = asyncio.create_task(later())
    calls = await api.wait_for("sendMessage", lambda c: c.params["chat_id"] == 3, count=2)
    await task
    assert [c.text for c in calls] == ["one", "two"]

    with pytest.raises(AssertionError, match=r"(?s)for 1 editMessageText.*sendMessage"):
        await api.wait_for("editMessageText", timeout=0.2)


async def test_edit_and_delete_change_what_the_user_sees(api: FakeBotAPI, bot: Bot) -> None:
    api.known_chat(9)
    sent = await bot.send_message(9, "Choose:", reply_markup=keyboard("x:1", "x:2"))

    edited = await bot.edit_message_text("Chosen: 1", chat_id=9, message_id=sent.message_id)
    assert not isinstance(edited, bool) and edited.text == "Chosen: 1"
    [now] = api.chat(9)
    assert now.plain_text == "Chosen: 1" and now.buttons == [] and now.edits == 1

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Chosen: 1", chat_id=9, message_id=sent.message_id)

    await bot.edit_message_reply_markup(
        chat_id=9, message_id=sent.message_id, reply_markup=keyboard("y:1")
    )
    assert api.chat(9)[0].button("y:1")

    assert await bot.delete_message(9, sent.message_id) is True
    assert api.chat(9) == []
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(9, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=9, message_id=99)


async def test_telegram_refuses_what_telegram_refuses(api: FakeBotAPI, bot: Bot) -> None:
    api.known_chat(4)
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(4, "ООО <Ромашка>")  # a client name, not escaped
    await bot.send_message(4, "ООО &lt;Ромашка&gt; &amp; <b>Ко</b>")
    await bot.send_message(4, "ООО <Ромашка>", parse_mode=None)
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(4, "<b></b>")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(4, "я" * 4097)
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(4, "x", reply_markup=keyboard("d" * 65))
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_message(12345, "to someone who never wrote")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(-100, "to a group the bot is not in")
    assert [m.plain_text for m in api.chat(4)] == ["ООО <Ромашка> & Ко", "ООО <Ромашка>"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('<b>bold</b> <i>it</i> <a href="https://x">link</a> &#128512;', None),
        ('<pre><code class="language-python">x</code></pre>', None),
        ("1 < 2", "Unsupported start tag"),
        ("<script>x</script>", 'Unsupported start tag "script"'),
        ("<b>open", "Can't find end tag"),
        ("<b><i>x</b></i>", "Unmatched end tag"),
        ("&nbsp;", "Unsupported HTML entity"),
        ("Tom & Jerry", None),
    ],
)
def test_html_check(text: str, problem: str | None) -> None:
    found = html_problem(text)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_plain() -> None:
    assert plain("<b>A</b> &lt;b&gt; &amp; &quot;q&quot;") == 'A <b> & "q"'


async def test_callback_queries_are_answered_once(api: FakeBotAPI, bot: Bot) -> None:
    api.message(6, "hi")
    sent = await bot.send_message(6, "Press", reply_markup=keyboard("p:1"))
    update_id = api.callback(6, "p:1", sent.message_id)
    [update] = await bot.get_updates(offset=update_id, timeout=0)
    assert update.update_id == update_id
    query = update.callback_query
    assert query is not None and query.data == "p:1"
    assert query.message is not None and query.message.message_id == sent.message_id
    assert query.from_user.language_code == "ru"  # remembered from the user's message

    assert await bot.answer_callback_query(query.id, text="ok") is True
    assert api.answered_callbacks[query.id]["text"] == "ok"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)


async def test_contact_and_pre_checkout_updates(api: FakeBotAPI, bot: Bot) -> None:
    api.message(11, contact="+79451231010")
    api.pre_checkout(11, "order:5", 150000)
    contact_update, checkout_update = await bot.get_updates(timeout=0)
    assert contact_update.message is not None and contact_update.message.contact is not None
    assert contact_update.message.contact.phone_number == "+79451231010"
    assert contact_update.message.contact.user_id == 11
    query = checkout_update.pre_checkout_query
    assert query is not None and query.total_amount == 150000
    assert query.invoice_payload == "order:5"
    assert await bot.answer_pre_checkout_query(query.id, ok=True) is True
    with pytest.raises(TelegramBadRequest, match="error_message"):
        await bot.answer_pre_checkout_query(query.id, ok=False)


async def test_send_invoice(api: FakeBotAPI, bot: Bot) -> None:
    api.known_chat(11)
    message = await bot.send_invoice(
        11,
        title="Order ЦОА0000001",
        description="Brake pads",
        payload="order:1",
        currency="RUB",
        prices=[LabeledPrice(label="Pads", amount=150000), LabeledPrice(label="Work", amount=50)],
        provider_token="test",
    )
    assert message.invoice is not None and message.invoice.total_amount == 150050
    assert api.calls_of("sendInvoice")[0].params["prices"][0]["amount"] == 150000


async def test_commands_per_language_and_webhook_conflict(api: FakeBotAPI, bot: Bot) -> None:
    await bot.set_my_commands(
        [BotCommand(command="start", description="Меню")], language_code="ru"
    )
    await bot.set_my_commands([BotCommand(command="start", description="Menu")])
    assert [c.description for c in await bot.get_my_commands(language_code="ru")] == ["Меню"]
    assert [c.description for c in await bot.get_my_commands()] == ["Menu"]
    assert api.commands_for("ru") == ["start"] and api.commands_for("en") == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad Command", description="x")])

    assert await bot.set_webhook("https://example.org/hook", secret_token="s3cret") is True
    assert api.webhook is not None and api.webhook["secret_token"] == "s3cret"
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates(timeout=0)
    await bot.delete_webhook()
    assert await bot.get_updates(timeout=0) == []


async def test_any_other_method_is_accepted(api: FakeBotAPI, bot: Bot) -> None:
    api.known_chat(1)
    assert await bot.send_chat_action(1, "typing") is True
    assert api.calls_of("sendChatAction")[0].params["action"] == "typing"


async def test_scripted_faults(api: FakeBotAPI, bot: Bot) -> None:
    api.known_chat(1)
    api.known_chat(-555)
    api.script("sendMessage", retry_after(3), server_error(), blocked())
    api.script("sendMessage", migrated(-1001234567890), Scripted(when=lambda p: False))

    with pytest.raises(TelegramRetryAfter) as flood:
        await bot.send_message(1, "a")
    assert flood.value.retry_after == 3
    with pytest.raises(TelegramServerError):
        await bot.send_message(1, "b")
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(1, "c")
    with pytest.raises(TelegramMigrateToChat) as moved:
        await bot.send_message(-555, "d")
    assert moved.value.migrate_to_chat_id == -1001234567890
    await bot.send_message(1, "e")  # the scripts are used up (the last one never matches)

    assert [(c.params["text"], c.status) for c in api.calls_of("sendMessage")] == [
        ("a", 429),
        ("b", 500),
        ("c", 403),
        ("d", 400),
        ("e", 200),
    ]
    assert [c.text for c in api.sent()] == ["e"]


async def test_scripted_for_one_chat_only_and_delayed(api: FakeBotAPI, bot: Bot) -> None:
    api.known_chat(1)
    api.known_chat(2)
    api.script("sendMessage", blocked_for(2))
    await bot.send_message(1, "not this chat")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(2, "this one")

    api.script("sendMessage", delayed(0.3))
    started = time.monotonic()
    message = await bot.send_message(1, "slow")
    assert message.text == "slow" and time.monotonic() - started >= 0.3


def blocked_for(chat_id: int) -> Scripted:
    refusal = blocked()
    refusal.when = lambda params: params.get("chat_id") == chat_id
    return refusal


async def test_in_progress_shows_a_call_being_answered(api: FakeBotAPI, bot: Bot) -> None:
    api.known_chat(1)
    api.script("sendMessage", delayed(5))
    sending = asyncio.create_task(bot.send_message(1, "slow"))
    await api.wait_until(lambda: api.in_progress["sendMessage"] == 1)
    assert api.calls_of("sendMessage") == []
    await api.close()  # a delay ends early when the server closes
    await sending
    assert api.in_progress["sendMessage"] == 0


async def test_updates_go_to_the_webhook_with_the_secret(api: FakeBotAPI, bot: Bot) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get(SECRET_HEADER), await request.json()))
        arrived.set()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        update_id = api.message(5, "via webhook")
        await api.wait_until(lambda: bool(api.deliveries))
        await arrived.wait()
    finally:
        await runner.cleanup()
    [(secret, body)] = received
    assert secret == "s3cret" and body["update_id"] == update_id
    assert body["message"]["text"] == "via webhook"
    assert api.deliveries[0].status == 200 and api.pending == []
