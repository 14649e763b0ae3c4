"""Linking a client's chat: the shared phone, the invite link, the managers' decisions.

Three routers (see ``bot.app.ROUTERS``):

- :func:`make_invite_router` — ``/start c_<token>``, before everything a client or a
  stranger meets: whoever opens a client invite;
- :func:`make_router` — strangers in a private chat sharing their contact; the prompt that
  asks for it is the strangers' answer (``handlers.common``);
- :func:`make_staff_router` — staff: pending link requests (from the main menu) and the
  client card's "Invite to the bot".

The rules are in ``services.clients_link`` and ``services.invites``.
"""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router, html
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.i18n import LANGUAGES
from handlers import IsStaff, IsStranger, Magic, fmt
from handlers.callbacks import ClientInvite, LinkDecision
from handlers.client import consent_text, menu_screen
from handlers.fmt import q
from handlers.navigation import refuse, show
from handlers.screens import Screen
from services import clients_link, invites
from services.access import Permission, can
from services.clients_link import DecideProblem, DecideRefused, LinkOutcome
from storage.db import begin_immediate
from storage.models import Client, LinkRequest, LinkRequestState, Staff

logger = logging.getLogger(__name__)


def make_invite_router() -> Router:
    """Anyone may open a client invite link (in a private chat)."""
    router = Router(name="client-invites")
    router.message.register(
        redeem,
        Magic(F.chat.type == ChatType.PRIVATE),
        CommandStart(deep_link=True, magic=F.args.startswith(invites.CLIENT_PREFIX)),
    )
    return router


def make_router() -> Router:
    """Strangers sharing their phone."""
    router = Router(name="linking")
    router.message.filter(IsStranger(), Magic(F.chat.type == ChatType.PRIVATE))
    router.message.register(on_contact, Magic(F.contact))
    return router


def make_staff_router() -> Router:
    router = Router(name="linking-staff")
    router.callback_query.filter(IsStaff())
    router.callback_query.register(on_decision, LinkDecision.filter())
    router.callback_query.register(make_invite, ClientInvite.filter())
    return router


# --- strangers ------------------------------------------------------------------------------


def share_phone_keyboard() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=_("📱 Share my phone number"), request_contact=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def stranger_text() -> str:
    return _(
        "Hello! This is the car service's bot. If you are our client, share your phone "
        "number with the button below and I will find your cars and orders. If you are a "
        "staff member, ask the administrator for an invite link."
    )


async def ask_for_phone(message: Message) -> None:
    """The strangers' answer to anything: what this is, and the share-phone button."""
    await message.answer(stranger_text(), reply_markup=share_phone_keyboard())


async def on_contact(message: Message, session: AsyncSession, settings: Settings) -> None:
    contact = message.contact
    user = message.from_user
    assert contact is not None
    if user is None or contact.user_id != user.id:
        await message.answer(
            _(
                "I can only take your own phone number: please press the button below "
                "instead of sending a contact."
            ),
            reply_markup=share_phone_keyboard(),
        )
        return
    phone = clients_link.contact_phone(contact.phone_number, settings.default_region)
    if phone is None:
        await message.answer(
            _("I could not read this phone number. Please contact the shop."),
            reply_markup=ReplyKeyboardRemove(),
        )
        return
    await begin_immediate(session)
    result = await clients_link.link_by_phone(
        session,
        chat_id=message.chat.id,
        telegram_user_id=user.id,
        phone=phone,
        name=user.full_name,
    )
    if result.outcome is LinkOutcome.LINKED and result.client is not None:
        clients_link.remember_locale(result.client, user.language_code, LANGUAGES)
    await session.commit()
    if result.outcome is LinkOutcome.NO_MATCH:
        await message.answer(
            _(
                "I could not find a client of the shop with this phone number. Please "
                "contact the shop: they can add your number or send you an invite link."
            ),
            reply_markup=ReplyKeyboardRemove(),
        )
        return
    if result.outcome is LinkOutcome.PENDING:
        await message.answer(
            _("Thank you! The shop will confirm it is you and I will write to you here.")
            + "\n\n"
            + consent_text(),
            reply_markup=ReplyKeyboardRemove(),
        )
        return
    assert result.client is not None
    await _welcome(message, result.client)


async def _welcome(message: Message, client: Client) -> None:
    await message.answer(
        _("Done: this chat is linked to {name}.").format(name=f"<b>{q(client.name)}</b>")
        + "\n\n"
        + consent_text(),
        reply_markup=ReplyKeyboardRemove(),
    )
    screen = menu_screen(client)
    await message.answer(screen.text, reply_markup=screen.markup)


async def redeem(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    staff: Staff | None = None,
) -> None:
    user = message.from_user
    if user is None:
        return
    if staff is not None:  # staff see the staff's bot: the link is for the client's phone
        await message.answer(
            _("This invite link is for a client: send it to them, do not open it yourself.")
        )
        return
    await begin_immediate(session)
    try:
        client = await invites.redeem_client_invite(
            session, command.args or "", chat_id=message.chat.id, telegram_id=user.id
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
                invites.InviteProblem.ALREADY_LINKED: _(
                    "This chat is already linked to another client. Please contact the shop."
                ),
            }[refused.problem]
        )
        return
    clients_link.remember_locale(client, user.language_code, LANGUAGES)
    await session.commit()
    await _welcome(message, client)


# --- staff: link requests ---------------------------------------------------------------------


def _requests_screen(requests: list[LinkRequest], settings: Settings) -> Screen:
    lines = ["<b>" + _("Link requests") + "</b>", ""]
    builder = InlineKeyboardBuilder()
    if not requests:
        lines.append(_("No pending link requests."))
    for r in requests:
        label = f"{fmt.phone(r.phone)} · {q(r.name)} · {fmt.when(r.created_at, settings.tz)}"
        lines.append("• " + label)
        builder.row(
            InlineKeyboardButton(
                text=fmt.cut(f"{r.phone} · {r.name or ''}", 60),
                callback_data=LinkDecision(action="open", request_id=r.id).pack(),
            )
        )
    return Screen("\n".join(lines), builder.as_markup())


def _request_screen(request: LinkRequest, candidates: list[Client], settings: Settings) -> Screen:
    lines = [
        "<b>" + _("Link request") + "</b>",
        _("Phone: {phone}").format(phone=fmt.phone(request.phone)),
        _("Name in Telegram: {name}").format(name=q(request.name)),
        _("Asked: {when}").format(when=fmt.when(request.created_at, settings.tz)),
        "",
        _("Clients with this phone:"),
    ]
    rows = []
    for c in candidates:
        linked = " · " + _("linked to another chat") if c.telegram_chat_id else ""
        lines.append(f"• {q(c.name)} · {fmt.phone(c.main_phone)}{linked}")
        rows.append(
            [
                InlineKeyboardButton(
                    text=fmt.cut(_("Link to {name}").format(name=c.name), 60),
                    callback_data=LinkDecision(
                        action="link", request_id=request.id, client_id=c.id
                    ).pack(),
                )
            ]
        )
    rows.append(
        [
            InlineKeyboardButton(
                text=_("None of these"),
                callback_data=LinkDecision(action="none", request_id=request.id).pack(),
            )
        ]
    )
    rows.append(
        [InlineKeyboardButton(text=_("« Back"), callback_data=LinkDecision(action="list").pack())]
    )
    return Screen("\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows))


async def on_decision(
    callback: CallbackQuery,
    callback_data: LinkDecision,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    bot: Bot,
    i18n: I18n,
) -> None:
    if not can(staff, Permission.LINK_CLIENTS):
        await refuse(callback, session, staff, reason="forbidden", detail="link request")
        return
    action = callback_data.action
    if action == "list":
        await callback.answer()
        await show(
            callback, _requests_screen(await clients_link.pending_requests(session), settings)
        )
        return
    if action == "open":
        request = await clients_link.get_request(session, callback_data.request_id)
        if request is None:
            await refuse(callback, session, staff, reason="stale", detail="link request")
            return
        if request.state != LinkRequestState.PENDING:
            await callback.answer(_("This request has already been decided."), show_alert=True)
            await show(
                callback,
                _requests_screen(await clients_link.pending_requests(session), settings),
            )
            return
        candidates = await clients_link.matching_clients(session, request.phone)
        await callback.answer()
        await show(callback, _request_screen(request, candidates, settings))
        return
    if action not in ("link", "none"):
        await refuse(callback, session, staff, reason="malformed", detail=action)
        return
    await begin_immediate(session)
    try:
        request, client = await clients_link.decide(
            session,
            callback_data.request_id,
            callback_data.client_id if action == "link" else None,
            staff=staff,
        )
    except DecideRefused as refused:
        await session.rollback()
        if refused.problem is DecideProblem.DECIDED:
            await callback.answer(_("This request has already been decided."), show_alert=True)
        elif refused.problem is DecideProblem.CHAT_TAKEN:
            await callback.answer(
                _("This chat is linked to another client already."), show_alert=True
            )
        else:
            await refuse(callback, session, staff, reason=refused.problem.value, detail="link")
            return
        await show(
            callback, _requests_screen(await clients_link.pending_requests(session), settings)
        )
        return
    await session.commit()
    await callback.answer(
        _("Linked to {name}.").format(name=client.name)
        if client is not None
        else _("Rejected: the person was told to contact the shop."),
        show_alert=True,
    )
    await _tell_requester(bot, i18n, settings, request, client)
    await show(callback, _requests_screen(await clients_link.pending_requests(session), settings))


async def _tell_requester(
    bot: Bot, i18n: I18n, settings: Settings, request: LinkRequest, client: Client | None
) -> None:
    """The person who asked hears the outcome at once, in the shop's language (we keep
    no language for someone who is not a client yet)."""
    with i18n.use_locale(settings.default_locale):
        if client is not None:
            text = _("The shop has confirmed it is you: this chat is linked to {name}.").format(
                name=f"<b>{q(client.name)}</b>"
            )
            markup = menu_screen(client).markup
        else:
            text = _(
                "The shop could not confirm who you are by this phone number. Please "
                "contact the shop."
            )
            markup = None
    try:
        await bot.send_message(request.chat_id, text, reply_markup=markup)
    except TelegramAPIError as exc:
        logger.info("could not tell link request %s its outcome: %s", request.id, exc)


# --- staff: invite a client -----------------------------------------------------------------


async def make_invite(
    callback: CallbackQuery,
    callback_data: ClientInvite,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    bot: Bot,
) -> None:
    if not can(staff, Permission.LINK_CLIENTS):
        await refuse(callback, session, staff, reason="forbidden", detail="client invite")
        return
    await begin_immediate(session)
    made = await invites.create_client_invite(session, callback_data.client_id, actor=staff)
    client = await session.get(Client, callback_data.client_id)
    if made is None or client is None:
        await session.rollback()
        await refuse(callback, session, staff, reason="stale", detail="client")
        return
    name = client.name
    await session.commit()
    token, expires = made
    me = await bot.me()  # cached by aiogram after the first call
    link = f"https://t.me/{me.username}?start={token}"
    await callback.answer()
    if isinstance(callback.message, Message):
        await callback.message.answer(
            _(
                "Invite link for {name}: send it to the client. It works once and expires "
                "{when}; opening it links their Telegram to the client.\n{link}"
            ).format(
                name=f"<b>{q(name)}</b>",
                when=fmt.when(expires, settings.tz),
                link=html.quote(link),
            )
        )
