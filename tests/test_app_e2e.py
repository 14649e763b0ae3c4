"""The bot end to end: the real aiogram client, polling loop and webhook server, against the
Bot API stand-in and a real database."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiogram import F, Router
from aiogram.types import Message
from aiohttp import ClientSession

from bot.app import ROUTERS, redact_token_in_logs
from handlers import errors
from handlers.callbacks import SetLanguage
from storage.models import Role
from tests.botapi import blocked, delayed, server_error
from tests.e2e_support import TOKEN, BotHarness, running_bot

# A stranger learns what this is and gets the button to share their phone: no data.
STRANGER_RU = (
    "Здравствуйте! Это бот автосервиса. Если вы наш клиент, поделитесь номером телефона "
    "кнопкой ниже — я найду ваши автомобили и заказы. Если вы сотрудник автосервиса, "
    "попросите у администратора ссылку-приглашение."
)
STRANGER_EN = (
    "Hello! This is the car service's bot. If you are our client, share your phone number "
    "with the button below and I will find your cars and orders. If you are a staff member, "
    "ask the administrator for an invite link."
)
STRANGER_PRESS_RU = "Эта кнопка не для вас. Отправьте /start, чтобы начать."
OOPS_RU = "Что-то пошло не так. Попробуйте ещё раз."


@pytest.fixture
async def bot(sqlite_url: str) -> AsyncIterator[BotHarness]:
    async with running_bot(sqlite_url) as harness:
        yield harness


# --- strangers ------------------------------------------------------------------------------


async def test_a_stranger_gets_one_short_message_and_nothing_else(bot: BotHarness) -> None:
    outcome = await bot.send(500, "/start")
    assert [c.method for c in outcome.calls] == ["sendMessage"]
    assert outcome.text == STRANGER_RU

    outcome = await bot.send(501, "/start", language_code="en")
    assert outcome.text == STRANGER_EN
    outcome = await bot.send(502, "/start", language_code="de")  # not ours: the default
    assert outcome.text == STRANGER_RU


async def test_a_stranger_gets_no_data_whatever_they_send(bot: BotHarness) -> None:
    await bot.add_staff(100, "Иван Петров", Role.ADMIN)
    for text in ("А123ВС77", "/help", "/lang en", "Иван"):
        outcome = await bot.send(500, text)
        assert outcome.text == STRANGER_RU, text
    # A press on someone else's button (forged or stale): a short alert, nothing else.
    outcome = await bot.press(500, SetLanguage(code="en").pack(), 1)
    assert [c.method for c in outcome.calls] == ["answerCallbackQuery"]
    assert outcome.calls[0].params["text"] == STRANGER_PRESS_RU
    assert (await bot.staff(100)).locale is None  # type: ignore[union-attr]


async def test_strangers_in_a_group_are_not_answered(bot: BotHarness) -> None:
    outcome = await bot.send(500, "/start", chat_id=-4001)
    assert outcome.calls == []


async def test_a_deactivated_staff_member_is_a_stranger(bot: BotHarness) -> None:
    await bot.add_staff(101, "Пётр", Role.MANAGER, active=False)
    outcome = await bot.send(101, "/start")
    assert outcome.text == STRANGER_RU


# --- staff ------------------------------------------------------------------------------------


async def test_staff_get_the_menu_in_russian(bot: BotHarness) -> None:
    await bot.add_staff(100, "Иван <Петров> & сын", Role.MASTER)
    outcome = await bot.send(100, "/start")
    text = outcome.text  # the HTML parsed: the name's "<" and "&" were escaped
    assert text.startswith("Здравствуйте, Иван <Петров> & сын! Вы вошли как: мастер.")
    assert "госномер" in text and "/lang — сменить язык" in text
    assert "принимать оплату" not in text and "сотрудники и настройки" not in text
    assert outcome.sent[0].params["text"].count("<b>") == 1

    help_outcome = await bot.send(100, "/help")
    assert help_outcome.text == text


async def test_the_menu_lists_what_the_role_can_do(bot: BotHarness) -> None:
    await bot.add_staff(1, "Admin", Role.ADMIN)
    await bot.add_staff(2, "Cashier", Role.CASHIER)
    admin = (await bot.send(1, "/start", language_code="en")).text
    cashier = (await bot.send(2, "/start", language_code="en")).text
    assert "You are signed in as: administrator." in admin
    assert "staff and settings" in admin and "take payments" in admin
    assert "You are signed in as: cashier." in cashier
    assert "take payments" in cashier and "staff and settings" not in cashier


async def test_staff_with_an_english_telegram_get_english(bot: BotHarness) -> None:
    await bot.add_staff(100, "Ivan", Role.MANAGER)
    text = (await bot.send(100, "/start", language_code="en")).text
    assert text.startswith("Hello, Ivan! You are signed in as: manager.")
    assert "alerts about your clients" in text
    text = (await bot.send(100, "/start", language_code="en-GB")).text
    assert text.startswith("Hello, Ivan!")


async def test_lang_switches_and_persists(db_url: str) -> None:
    async with running_bot(db_url) as bot:
        await bot.add_staff(100, "Иван", Role.MASTER)
        choose = await bot.send(100, "/lang")
        assert choose.text == "Выберите язык:"
        [screen] = bot.api.bot_messages(100)
        assert [b["text"] for row in screen.buttons for b in row] == ["English", "Русский"]

        english = screen.button("English")["callback_data"]
        pressed = await bot.press(100, english, screen.message_id)
        assert [c.method for c in pressed.calls] == ["answerCallbackQuery", "editMessageText"]
        assert pressed.text == "Done: I speak English now."
        assert bot.api.bot_messages(100)[-1].buttons == []  # one screen, edited in place
        assert (await bot.staff(100)).locale == "en"  # type: ignore[union-attr]

        # The saved choice wins over Telegram's language...
        menu = (await bot.send(100, "/start", language_code="ru")).text
        assert menu.startswith("Hello, Иван!")
        # ... and "/lang ru" switches straight back.
        assert (await bot.send(100, "/lang ru")).text == "Готово: теперь я говорю по-русски."
        assert (await bot.staff(100)).locale == "ru"  # type: ignore[union-attr]
        assert (await bot.send(100, "/start", language_code="en")).text.startswith(
            "Здравствуйте, Иван!"
        )


async def test_a_forged_language_press_changes_nothing(bot: BotHarness) -> None:
    await bot.add_staff(100, "Иван", Role.MASTER)
    outcome = await bot.press(100, SetLanguage(code="xx").pack(), 1)
    assert [c.method for c in outcome.calls] == ["answerCallbackQuery"]
    assert (await bot.staff(100)).locale is None  # type: ignore[union-attr]


async def test_commands_are_set_per_language_on_start(bot: BotHarness) -> None:
    assert bot.api.commands_for("ru") == [
        "start",
        "help",
        "lang",
        "filters",
        "client",
        "phone",
        "car",
        "staff",
    ]
    assert bot.api.commands_for("en") == [
        "start",
        "help",
        "lang",
        "filters",
        "client",
        "phone",
        "car",
        "staff",
    ]
    assert bot.api.commands_for("") == [
        "start",
        "help",
        "lang",
        "filters",
        "client",
        "phone",
        "car",
        "staff",
    ]  # everyone else: default
    descriptions = {
        lang: [c["description"] for c in bot.api.commands[("default", lang)]]
        for lang in ("ru", "en", "")
    }
    assert descriptions["ru"][0] == "Главное меню"
    assert descriptions["en"][0] == "Main menu"
    assert descriptions[""] == descriptions["ru"]  # DEFAULT_LOCALE=ru
    assert bot.api.calls_of("deleteWebhook")  # polling drops a webhook left behind


# --- errors ------------------------------------------------------------------------------------


def _boom_router() -> Router:
    router = Router(name="boom")

    @router.message(F.text == "/boom")
    async def boom(message: Message) -> None:
        raise RuntimeError(f"failed at https://api.telegram.org/bot{TOKEN}/sendMessage")

    return router


async def test_an_error_is_logged_without_the_token_and_the_user_told(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_bot(sqlite_url, routers=(errors.make_router, _boom_router)) as bot:
        outcome = await bot.send(100, "/boom")
    assert outcome.text == OOPS_RU
    failures = [r for r in caplog.records if r.name == "handlers.errors"]
    assert failures and failures[0].exc_text and "RuntimeError" in failures[0].exc_text
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text
    assert "<BOT_TOKEN>" in caplog.text


async def test_telegram_failing_an_answer_gets_an_apology(bot: BotHarness) -> None:
    await bot.add_staff(100, "Иван", Role.MASTER)
    bot.api.script("sendMessage", server_error())
    outcome = await bot.send(100, "/start")
    assert [(c.method, c.status) for c in outcome.calls] == [
        ("sendMessage", 500),
        ("sendMessage", 200),
    ]
    assert outcome.text == OOPS_RU


async def test_a_user_who_blocked_the_bot_is_not_written_to_again(bot: BotHarness) -> None:
    bot.api.script("sendMessage", blocked())
    outcome = await bot.send(500, "/start")
    assert [(c.method, c.status) for c in outcome.calls] == [("sendMessage", 403)]


def test_log_records_never_carry_the_token(caplog: pytest.LogCaptureFixture) -> None:
    redact_token_in_logs(TOKEN)
    log = logging.getLogger("aiogram.dispatcher")
    try:
        raise OSError(f"htp://x/bot{TOKEN}/getUpdates")
    except OSError as exc:
        log.error("Failed to fetch updates - %s: %s", type(exc).__name__, exc, exc_info=True)
    log.warning("another bot's token 987654321:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA leaked")
    assert "Failed to fetch updates - OSError: htp://x/bot<BOT_TOKEN>/getUpdates" in caplog.text
    assert TOKEN not in caplog.text and "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" not in caplog.text


# --- shutdown ---------------------------------------------------------------------------------


async def test_stopping_lets_the_update_in_hand_finish(sqlite_url: str) -> None:
    async with running_bot(sqlite_url) as bot:
        bot.api.script("sendMessage", delayed(0.5))
        update_id = bot.api.message(500, "/start")
        await bot.api.wait_until(lambda: bot.api.in_progress["sendMessage"] == 1)
        # leaving the block stops polling while the answer is still on its way
    assert bot.app.dp.tracker.handled(update_id)
    [answer] = bot.api.calls_of("sendMessage")
    assert answer.ok and answer.text == STRANGER_RU


# --- webhook mode ------------------------------------------------------------------------------


async def test_webhook_mode_checks_the_secret(sqlite_url: str) -> None:
    async with running_bot(sqlite_url, webhook=True) as bot:
        [hook] = bot.api.calls_of("setWebhook")
        assert hook.params["url"] == bot.webhook_url
        assert hook.params["secret_token"] == bot.webhook_secret
        assert "message" in hook.params["allowed_updates"]
        assert bot.api.commands_for("en") == [
            "start",
            "help",
            "lang",
            "filters",
            "client",
            "phone",
            "car",
            "staff",
        ]

        update = bot.api.make_message(500, "/start")
        assert bot.webhook_url is not None
        async with ClientSession() as http:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                async with http.post(bot.webhook_url, json=update, headers=headers) as resp:
                    assert resp.status in (401, 403)
            # The right secret is handled (the fake delivers with it, as Telegram does).
            outcome = await bot.send(500, "/start")
        assert outcome.text == STRANGER_RU
        assert [d.status for d in bot.api.deliveries] == [200]
        # The refused ones did nothing: only the delivered update was answered.
        assert len(bot.api.sent()) == 1
        assert not bot.app.dp.tracker.handled(update["update_id"])


async def test_webhook_mode_serves_staff(sqlite_url: str) -> None:
    async with running_bot(sqlite_url, webhook=True) as bot:
        await bot.add_staff(100, "Ivan", Role.CASHIER)
        outcome = await bot.send(100, "/start", language_code="en")
        assert outcome.text.startswith("Hello, Ivan! You are signed in as: cashier.")


def test_routers_are_in_order() -> None:
    names = [make().name for make in ROUTERS]
    # errors first; before the strangers' stop only what a non-member may use (invites,
    # paying, a client's decisions on an estimate), the linked clients' own router (it
    # answers every press it does not own, so after the estimate's) and the strangers'
    # sharing of their phone
    assert names[0] == "errors"
    assert names[1:8] == [
        "invites",
        "client-invites",
        "telegram-payments",
        "estimate-client",
        "client",
        "linking",
        "strangers",
    ]
    # text search catches any text: after every other message handler
    assert names.index("search") > max(
        names.index(n) for n in names if n not in ("search", "stale-buttons")
    )
