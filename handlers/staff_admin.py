"""Staff management in the bot, for admins: invite by a one-time link, deactivate.

``/start s_<token>`` redeems an invite; its router goes before the strangers' stop, since
the person opening the link is not staff yet.
"""

from __future__ import annotations

from aiogram import Bot, F, Router, html
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import IsStaff, fmt
from handlers.callbacks import StaffAction
from handlers.common import menu_markup, menu_text, role_name
from handlers.navigation import refuse
from services import invites
from services import staff as staff_service
from services.access import Permission, can
from storage.db import begin_immediate
from storage.models import Role, Staff


def make_invite_router() -> Router:
    """Before the strangers' stop: anyone may open an invite link."""
    router = Router(name="invites")
    router.message.register(
        redeem, CommandStart(deep_link=True, magic=F.args.startswith(invites.STAFF_PREFIX))
    )
    return router


def make_router() -> Router:
    router = Router(name="staff-admin")
    router.message.filter(IsStaff())
    router.callback_query.filter(IsStaff())
    router.message.register(show_staff, Command("staff"))
    router.callback_query.register(on_action, StaffAction.filter())
    return router


async def redeem(message: Message, command: CommandObject, session: AsyncSession) -> None:
    user = message.from_user
    if user is None:
        return
    await begin_immediate(session)
    try:
        member = await invites.redeem_staff_invite(
            session,
            command.args or "",
            telegram_id=user.id,
            name=user.full_name,
            locale=user.language_code if user.language_code in ("ru", "en") else None,
        )
    except invites.InviteRefused as refused:
        await session.commit()  # the refusal is audited
        await message.answer(
            {
                invites.InviteProblem.USED: _("This invite link has already been used."),
                invites.InviteProblem.EXPIRED: _(
                    "This invite link has expired. Ask for a new one."
                ),
                invites.InviteProblem.UNKNOWN: _("This invite link is not valid."),
            }[refused.problem]
        )
        return
    await session.commit()
    await message.answer(menu_text(member), reply_markup=menu_markup(member))


def _staff_screen(members: list[Staff], me: Staff) -> tuple[str, InlineKeyboardMarkup]:
    lines = ["<b>" + _("Staff") + "</b>"]
    builder = InlineKeyboardBuilder()
    for m in members:
        state = "" if m.active else " · " + _("deactivated")
        lines.append(f"• {fmt.q(m.name)} · {role_name(Role(m.role))} · {m.telegram_id}{state}")
        if m.active and m.id != me.id:
            builder.row(
                InlineKeyboardButton(
                    text=_("Deactivate {name}").format(name=m.name)[:60],
                    callback_data=StaffAction(action="ask", staff_id=m.id).pack(),
                )
            )
    invite_row = [
        InlineKeyboardButton(
            text="➕ " + role_name(role),
            callback_data=StaffAction(action="invite", role=role.value).pack(),
        )
        for role in (Role.MASTER, Role.MANAGER, Role.CASHIER, Role.ADMIN)
    ]
    lines += ["", _("Invite someone: pick the role, then send them the link.")]
    builder.row(*invite_row[:2])
    builder.row(*invite_row[2:])
    return "\n".join(lines), builder.as_markup()


async def show_staff(message: Message, session: AsyncSession, staff: Staff) -> None:
    if not can(staff, Permission.STAFF):
        await message.answer(_("Only an administrator manages staff."))
        return
    text, markup = _staff_screen(await staff_service.list_staff(session), staff)
    await message.answer(text, reply_markup=markup)


async def on_action(
    callback: CallbackQuery,
    callback_data: StaffAction,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    bot: Bot,
) -> None:
    if not can(staff, Permission.STAFF):
        await refuse(callback, session, staff, reason="forbidden", detail="staff")
        return
    action = callback_data.action
    if action == "invite":
        try:
            role = Role(callback_data.role)
        except ValueError:
            await refuse(callback, session, staff, reason="malformed", detail="role")
            return
        await begin_immediate(session)
        token, expires = await invites.create_staff_invite(session, role, actor=staff)
        await session.commit()
        me = await bot.me()
        link = f"https://t.me/{me.username}?start={token}"
        await callback.answer()
        if isinstance(callback.message, Message):
            await callback.message.answer(
                _(
                    "Invite for a new {role}: send this link to them. It works once and "
                    "expires {when}.\n{link}"
                ).format(
                    role=role_name(role),
                    when=fmt.when(expires, settings.tz),
                    link=html.quote(link),
                )
            )
        return
    if action not in ("ask", "off", "list"):
        await refuse(callback, session, staff, reason="malformed", detail=action)
        return
    if action == "off":
        await begin_immediate(session)  # before the read: the check and the change are one
    target = await session.get(Staff, callback_data.staff_id) if callback_data.staff_id else None
    if action != "list" and (target is None or not target.active or target.id == staff.id):
        await refuse(callback, session, staff, reason="stale", detail="staff member")
        return
    if action == "ask" and target is not None:
        builder = InlineKeyboardBuilder()
        builder.row(
            InlineKeyboardButton(
                text=_("Yes, deactivate"),
                callback_data=StaffAction(action="off", staff_id=target.id).pack(),
            ),
            InlineKeyboardButton(
                text=_("Cancel"), callback_data=StaffAction(action="list").pack()
            ),
        )
        await callback.answer()
        if isinstance(callback.message, Message):
            await callback.message.edit_text(
                _("Deactivate {name}? They will lose access at once.").format(
                    name=fmt.q(target.name)
                ),
                reply_markup=builder.as_markup(),
            )
        return
    if action == "off" and target is not None:
        await staff_service.deactivate(session, target.telegram_id, actor=staff)
        await session.commit()
    await callback.answer()
    text, markup = _staff_screen(await staff_service.list_staff(session), staff)
    if isinstance(callback.message, Message):
        await callback.message.edit_text(text, reply_markup=markup)
