"""Admins invite staff with a one-time link and deactivate them, from the bot."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from handlers.callbacks import StaffAction
from storage.models import AuditLog, Role
from tests.e2e_support import BotHarness, running_bot

ADMIN, MANAGER, NEWCOMER, SECOND = 1, 2, 50, 51


@pytest.fixture
async def bot(sqlite_url: str) -> AsyncIterator[BotHarness]:
    async with running_bot(sqlite_url) as harness:
        await harness.add_staff(ADMIN, "Админ", Role.ADMIN)
        await harness.add_staff(MANAGER, "Менеджер", Role.MANAGER)
        yield harness


async def test_invite_join_and_deactivate(bot: BotHarness) -> None:
    out = await bot.send(ADMIN, "/staff")
    assert "Админ" in out.text and "Менеджер" in out.text
    panel = bot.api.bot_messages(ADMIN)[-1]
    out = await bot.press(ADMIN, panel.button("➕ мастер")["callback_data"], panel.message_id)
    link = re.search(r"https://t\.me/\S+\?start=(\S+)", out.text)
    assert link, out.text
    token = link.group(1)

    out = await bot.send(NEWCOMER, f"/start {token}")
    assert "мастер" in out.text  # the menu of a master
    member = await bot.staff(NEWCOMER)
    assert member is not None and member.role is Role.MASTER and member.active
    out = await bot.send(SECOND, f"/start {token}")
    assert out.text == "Эта ссылка-приглашение уже использована."
    assert await bot.staff(SECOND) is None

    await bot.send(ADMIN, "/staff")
    panel = bot.api.bot_messages(ADMIN)[-1]
    await bot.press(ADMIN, panel.button("Отключить: ")["callback_data"], panel.message_id)
    confirm = bot.api.bot_messages(ADMIN)[-1]
    # the first deactivation button is the manager's or the newcomer's: confirm whichever
    await bot.press(ADMIN, confirm.button("Да, отключить")["callback_data"], panel.message_id)
    still_active = [m for m in (await bot.staff(MANAGER), await bot.staff(NEWCOMER)) if m.active]
    assert len(still_active) == 1
    gone = MANAGER if still_active[0].telegram_id == NEWCOMER else NEWCOMER
    out = await bot.send(gone, "n123ap")
    assert out.text.startswith("Здравствуйте! Это бот автосервиса.")
    async with bot.app.session_factory() as s:
        actions = set((await s.scalars(select(AuditLog.action))).all())
    assert {"invite.create", "invite.redeem", "invite.refused", "staff.deactivate"} <= actions


async def test_forged_links_and_presses(bot: BotHarness) -> None:
    out = await bot.send(NEWCOMER, "/start s_forged-token")
    assert out.text == "Эта ссылка-приглашение недействительна."
    out = await bot.send(MANAGER, "/staff")
    assert out.text == "Сотрудниками управляет только администратор."
    forged = StaffAction(action="invite", role="admin").pack()
    out = await bot.press(MANAGER, forged, 1)
    assert out.of("answerCallbackQuery")[0].params["text"] == "Эта кнопка устарела."
    assert out.of("sendMessage") == []
    admin_self = (await bot.staff(ADMIN)).id  # type: ignore[union-attr]
    out = await bot.press(ADMIN, StaffAction(action="off", staff_id=admin_self).pack(), 1)
    assert out.of("answerCallbackQuery")[0].params["text"] == "Эта кнопка устарела."
    assert (await bot.staff(ADMIN)).active  # type: ignore[union-attr]
