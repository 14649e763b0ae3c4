"""/start, /help and /lang for staff; one short answer for everyone else.

The strangers' router goes before every staff router (see ``bot.app.ROUTERS``): an update
from anyone who is neither an active staff member nor a linked client ends there, with
what this bot is and the button to share their phone (``handlers.linking``), so no feature
router can show them data by mistake. Invite links, payments, linked clients and the shared
contact are handled before it by routers with their own filters.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiogram import F, Router, html
from aiogram.enums import ChatType
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import BotCommand, CallbackQuery, InlineKeyboardMarkup, Message, TelegramObject
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from babel import Locale
from sqlalchemy.ext.asyncio import AsyncSession

from handlers import IsStaff, IsStranger, Magic
from handlers.callbacks import FilterToggle, LinkDecision, SetLanguage, StaffAction
from handlers.linking import ask_for_phone
from services import staff as staff_service
from services.access import Permission, can
from storage.models import Role, Staff


def make_router() -> Router:
    """The staff's common commands."""
    router = Router(name="common")
    router.message.filter(IsStaff())
    router.callback_query.filter(IsStaff())
    router.message.register(show_menu, CommandStart())
    router.message.register(show_menu, Command("help"))
    router.message.register(choose_language, Command("lang"))
    router.callback_query.register(set_language, SetLanguage.filter())
    return router


def make_strangers_router() -> Router:
    """Everything from a stranger stops here, with one short message and no data."""
    router = Router(name="strangers")
    router.message.filter(IsStranger())
    router.edited_message.filter(IsStranger())
    router.callback_query.filter(IsStranger())
    router.message.register(ask_for_phone, Magic(F.chat.type == ChatType.PRIVATE))
    router.message.register(ignore)  # groups: staying quiet is the polite answer
    router.edited_message.register(ignore)
    router.callback_query.register(answer_stranger_press)
    return router


def bot_commands() -> list[BotCommand]:
    """The command menu, in the current locale (see ``bot.app.set_commands``)."""
    return [
        BotCommand(command="start", description=_("Main menu")),
        BotCommand(command="help", description=_("What I can do for you")),
        BotCommand(command="lang", description=_("Change the language")),
        BotCommand(command="filters", description=_("Client lists by the seven filters")),
        BotCommand(command="client", description=_("Search by name or discount card")),
        BotCommand(command="phone", description=_("Search by phone, e-mail or address")),
        BotCommand(command="car", description=_("Search by plate, VIN or body number")),
        BotCommand(command="staff", description=_("Staff: invite and deactivate (admins)")),
    ]


# --- staff ------------------------------------------------------------------------------


async def show_menu(message: Message, staff: Staff) -> None:
    await message.answer(menu_text(staff), reply_markup=menu_markup(staff))


def menu_markup(staff: Staff) -> InlineKeyboardMarkup:
    """The main menu's buttons: the filters for everyone, staff management for admins."""
    builder = InlineKeyboardBuilder()
    builder.button(text=_("Filters"), callback_data=FilterToggle(flt=""))
    if can(staff, Permission.LINK_CLIENTS):
        builder.button(text=_("Link requests"), callback_data=LinkDecision(action="list"))
    if can(staff, Permission.STAFF):
        builder.button(text=_("Staff"), callback_data=StaffAction(action="list"))
    return builder.as_markup()


def menu_text(staff: Staff) -> str:
    lines = [
        _("Hello, {name}! You are signed in as: {role}.").format(
            name=html.bold(html.quote(staff.name)), role=role_name(staff.role)
        ),
        "",
        _("Send a plate, VIN, body number, phone or client name to find the client and the car."),
        "",
        _("What you can do here:"),
        *(f"• {line}" for line in capabilities(staff.role)),
        "",
        _("/filters — client lists by the seven filters"),
        _("/help — this menu"),
        _("/lang — change the language"),
    ]
    return "\n".join(lines)


def role_name(role: Role) -> str:
    names = {
        Role.ADMIN: _("administrator"),
        Role.MANAGER: _("manager"),
        Role.MASTER: _("mechanic"),
        Role.CASHIER: _("cashier"),
    }
    return names[role]


def capabilities(role: Role) -> list[str]:
    """What the role may do, as the domain describes the people."""
    master = [
        _("find a car by plate, VIN or body number; see its history, works and goods"),
        _("log a call, a visit or a note about the client"),
    ]
    manager = [
        _("clients: contacts, orders, documents and events"),
        _("alerts about your clients"),
    ]
    cashier = [_("take payments: cash desk and cash receipt orders")]
    admin = [_("staff and settings")]
    return {
        Role.MASTER: master,
        Role.MANAGER: master[:1] + manager,
        Role.CASHIER: master[:1] + cashier,
        Role.ADMIN: master + manager + cashier + admin,
    }[role]


async def choose_language(
    message: Message,
    command: CommandObject,
    staff: Staff,
    session: AsyncSession,
    i18n: I18n,
) -> None:
    code = (command.args or "").strip().lower()
    if code in i18n.available_locales:
        await _save_locale(session, staff, code)
        with i18n.use_locale(code):
            await message.answer(_("Done: I speak English now."))
        return
    await message.answer(
        _("Choose the language:"), reply_markup=language_keyboard(i18n.available_locales)
    )


async def set_language(
    callback: CallbackQuery,
    callback_data: SetLanguage,
    staff: Staff,
    session: AsyncSession,
    i18n: I18n,
) -> None:
    code = callback_data.code
    if code not in i18n.available_locales:  # a forged press
        await callback.answer()
        return
    await callback.answer()
    await _save_locale(session, staff, code)
    with i18n.use_locale(code):
        text = _("Done: I speak English now.")
    if isinstance(callback.message, Message):
        await callback.message.edit_text(text)


def language_keyboard(codes: Iterable[str]) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for code in sorted(codes, key=language_name):
        builder.button(text=language_name(code), callback_data=SetLanguage(code=code))
    return builder.as_markup()


def language_name(code: str) -> str:
    """The language's own name ("English", "Русский"): never translated, by design."""
    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


async def _save_locale(session: AsyncSession, staff: Staff, code: str) -> None:
    await staff_service.set_locale(session, staff, code)
    await session.commit()


# --- strangers ------------------------------------------------------------------------------


async def answer_stranger_press(callback: CallbackQuery) -> None:
    await callback.answer(_("This button is not for you. Send /start to begin."), show_alert=True)


async def ignore(event: TelegramObject) -> None:
    return None
