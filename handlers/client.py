"""The linked client's side: my cars, my orders and what I owe, pay, my bookings; /stop
and /start; anything else they write goes to the shop as an incoming event.

Every press re-reads the object through ``services.client_portal`` with the pressing
client's id: another client's order id finds nothing, is answered "out of date" and
audited. The router sits before the strangers' stop (``bot.app.ROUTERS``) and ends with
catch-alls, so a linked client's update never reaches a staff router.
"""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandStart
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    TelegramObject,
)
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import IsClient, Magic, fmt
from handlers.callbacks import ClientOrder, ClientPay, ClientScreen, ClientView
from handlers.fmt import q
from handlers.navigation import show
from handlers.payments import payment_problem
from handlers.screens import Screen, doc_type_name, state_name
from services import audit, client_portal, clients_link, payments
from services.payments import PaymentProblem, PaymentRefused
from storage.db import begin_immediate
from storage.models import Client

logger = logging.getLogger(__name__)


def make_router() -> Router:
    router = Router(name="client")
    router.message.filter(IsClient())
    router.edited_message.filter(IsClient())
    router.callback_query.filter(IsClient())
    router.message.register(on_start, CommandStart())
    router.message.register(show_menu, Command("help"))
    router.message.register(on_stop, Command("stop"))
    router.message.register(already_linked, Magic(F.contact))
    router.message.register(on_message)  # anything else goes to the shop
    router.edited_message.register(ignore)
    router.callback_query.register(on_screen, ClientScreen.filter())
    router.callback_query.register(on_order, ClientOrder.filter())
    router.callback_query.register(on_pay, ClientPay.filter())
    router.callback_query.register(on_unknown_press)  # staff buttons, forged data: last
    return router


# --- helpers ----------------------------------------------------------------------------


async def _fresh(session: AsyncSession, client: Client) -> Client:
    """The client re-read inside a write transaction (the check and the change are one)."""
    await begin_immediate(session)
    return await session.get_one(Client, client.id, populate_existing=True)


async def refuse(
    callback: CallbackQuery, session: AsyncSession, client: Client, *, reason: str
) -> None:
    """ "Out of date", audited; nothing about the object is told."""
    try:
        audit.record(
            session,
            "button.refused",
            actor_telegram_id=callback.from_user.id,
            entity="client",
            entity_id=client.id,
            details={"reason": reason, "data": (callback.data or "")[:64]},
        )
        await session.commit()
    except Exception:  # the answer below must go out whatever the database says
        logger.exception("could not audit a refused press")
    await callback.answer(_("This button is out of date."), show_alert=True)


def _back(view: ClientView = ClientView.MENU) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=_("« Back"), callback_data=ClientScreen(view=view).pack())


# --- the menu, /start, /stop --------------------------------------------------------------


def consent_text() -> str:
    """What the client agrees to get (its version: ``clients_link.CONSENT_VERSION``)."""
    return _(
        "You will get messages here about your car (taken in for repair, ready for "
        "pickup), your bookings and the shop's answers. /stop turns them off, /start turns "
        "them back on."
    )


def menu_screen(client: Client) -> Screen:
    lines = [
        _("Hello, {name}!").format(name=f"<b>{q(client.name)}</b>"),
        "",
        _(
            "Here you see your cars, orders and bookings, and can pay. Anything you write "
            "here goes to the shop."
        ),
        "",
        _("Notifications are off: /start turns them on.")
        if client.notifications_off
        else _("/stop — no more notifications"),
    ]
    builder = InlineKeyboardBuilder()
    builder.button(text=_("My cars"), callback_data=ClientScreen(view=ClientView.CARS))
    builder.button(text=_("My orders"), callback_data=ClientScreen(view=ClientView.ORDERS))
    builder.button(text=_("My bookings"), callback_data=ClientScreen(view=ClientView.BOOKINGS))
    builder.adjust(2)
    return Screen("\n".join(lines), builder.as_markup())


async def show_menu(message: Message, client: Client) -> None:
    screen = menu_screen(client)
    await message.answer(screen.text, reply_markup=screen.markup)


async def on_start(message: Message, client: Client, session: AsyncSession) -> None:
    """The menu; after /stop, notifications back on (consent granted again)."""
    if client.notifications_off:
        client = await _fresh(session, client)
        if await clients_link.opt_in(session, client, chat_id=message.chat.id):
            await session.commit()
            await message.answer(_("Notifications are on again.") + "\n" + consent_text())
    await show_menu(message, client)


async def on_stop(message: Message, client: Client, session: AsyncSession) -> None:
    client = await _fresh(session, client)
    if await clients_link.opt_out(session, client, chat_id=message.chat.id):
        await session.commit()
        await message.answer(
            _(
                "Done: no more notifications. You can still look at your cars and orders "
                "here; /start turns the notifications back on."
            )
        )
        return
    await message.answer(_("Notifications are already off. /start turns them back on."))


async def already_linked(message: Message, client: Client) -> None:
    await message.answer(_("This chat is already linked to you."))
    await show_menu(message, client)


async def on_message(message: Message, client: Client, session: AsyncSession) -> None:
    """Anything the client writes is a new event for their manager."""
    text = message.text or message.caption or f"[{message.content_type}]"
    client = await _fresh(session, client)
    await client_portal.record_incoming(session, client, text, chat_id=message.chat.id)
    await session.commit()
    await message.answer(_("Sent to the shop. They will answer you here or call you."))


async def ignore(event: TelegramObject) -> None:
    return None


# --- screens --------------------------------------------------------------------------------


def car_status_name(status: str | None) -> str:
    return {
        client_portal.CarStatus.ON_SERVICE: _("on service"),
        client_portal.CarStatus.READY: _("ready, you can pick it up"),
    }.get(status or "", _("not on service"))


async def cars_screen(session: AsyncSession, client: Client) -> Screen:
    cars = await client_portal.my_cars(session, client.id)
    lines = ["<b>" + _("My cars") + "</b>", ""]
    if not cars:
        lines.append(_("No cars yet."))
    for car in cars:
        code = car.plate or car.vin
        status = car_status_name(car.status)
        if car.order_number:
            status += f" ({q(car.order_number)})"
        lines.append(f"🚗 {q(car.name)}" + (f" — {q(code)}" if code else ""))
        lines.append("    " + status)
    return Screen("\n".join(lines), InlineKeyboardMarkup(inline_keyboard=[[_back()]]))


def _debt_line(debt: int) -> str:
    if debt < 0:
        return _("You are in credit: {amount}").format(amount=fmt.money(-debt))
    return _("You owe: {amount}").format(amount=fmt.money(debt))


async def orders_screen(session: AsyncSession, client: Client, settings: Settings) -> Screen:
    mine = await client_portal.my_orders(session, client.id)
    lines = ["<b>" + _("My orders") + "</b>", _debt_line(mine.debt), ""]
    builder = InlineKeyboardBuilder()
    if not mine.orders:
        lines.append(_("No open or unpaid orders."))
    for order in mine.orders:
        doc = order.document
        lines.append(
            _("{kind} {number} of {date}: {state}").format(
                kind=doc_type_name(doc.doc_type),
                number=f"<b>{q(doc.number)}</b>",
                date=fmt.day(doc.date, settings.tz),
                state=state_name(doc.doc_type, doc.state),
            )
        )
        lines.append(
            "    "
            + _("total {total} · paid {paid} · due {due}").format(
                total=fmt.money(order.total),
                paid=fmt.money(order.paid),
                due=fmt.money(order.debt),
            )
        )
        builder.row(
            InlineKeyboardButton(
                text=fmt.cut(f"{doc.number} · {fmt.money(order.debt)}", 60),
                callback_data=ClientOrder(order_id=doc.id).pack(),
            )
        )
    builder.row(_back())
    return Screen("\n".join(lines), builder.as_markup())


async def order_screen(
    session: AsyncSession, client: Client, settings: Settings, order_id: int
) -> Screen | None:
    detail = await client_portal.my_order(session, client.id, order_id)
    if detail is None:
        return None
    order = detail.order
    doc = order.document
    lines = [
        f"<b>{doc_type_name(doc.doc_type)} {q(doc.number)}</b>",
        _("Date: {when}").format(when=fmt.day(doc.date, settings.tz)),
        _("State: {state}").format(state=state_name(doc.doc_type, doc.state)),
    ]
    if detail.car_name:
        lines.append(_("Car: {name}").format(name=q(detail.car_name)))
    if detail.lines:
        lines.append("")
        for line in detail.lines[:30]:
            item = q(fmt.cut(line.item, 80))
            lines.append(f"• {item} — {fmt.qty(line.qty_milli)} · {fmt.money(line.amount)}")
        if len(detail.lines) > 30:
            lines.append(_("…and {count} more").format(count=len(detail.lines) - 30))
    lines += [
        "",
        _("total {total} · paid {paid} · due {due}").format(
            total=fmt.money(order.total), paid=fmt.money(order.paid), due=fmt.money(order.debt)
        ),
    ]
    rows = []
    if order.payable and settings.payments_provider_token is not None:
        rows.append(
            [
                InlineKeyboardButton(
                    text=_("Pay {amount}").format(amount=fmt.money(order.debt)),
                    callback_data=ClientPay(order_id=doc.id).pack(),
                )
            ]
        )
    rows.append([_back(ClientView.ORDERS)])
    return Screen("\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows))


async def bookings_screen(session: AsyncSession, client: Client, settings: Settings) -> Screen:
    bookings = await client_portal.my_bookings(session, client.id)
    lines = ["<b>" + _("My bookings") + "</b>", ""]
    if not bookings:
        lines.append(_("No bookings ahead. Write here to book a repair."))
    for booking, car_name in bookings:
        lines.append(
            f"🗓 {fmt.when(booking.starts_at, settings.tz)}"
            + (f" — {q(car_name)}" if car_name else "")
        )
        if booking.reason:
            lines.append("    " + q(fmt.cut(booking.reason, 200)))
    return Screen("\n".join(lines), InlineKeyboardMarkup(inline_keyboard=[[_back()]]))


async def on_screen(
    callback: CallbackQuery,
    callback_data: ClientScreen,
    client: Client,
    session: AsyncSession,
    settings: Settings,
) -> None:
    await callback.answer()
    if callback_data.view is ClientView.CARS:
        screen = await cars_screen(session, client)
    elif callback_data.view is ClientView.ORDERS:
        screen = await orders_screen(session, client, settings)
    elif callback_data.view is ClientView.BOOKINGS:
        screen = await bookings_screen(session, client, settings)
    else:
        screen = menu_screen(client)
    await show(callback, screen)


async def on_order(
    callback: CallbackQuery,
    callback_data: ClientOrder,
    client: Client,
    session: AsyncSession,
    settings: Settings,
) -> None:
    screen = await order_screen(session, client, settings, callback_data.order_id)
    if screen is None:
        await refuse(callback, session, client, reason="not_own_order")
        return
    await callback.answer()
    await show(callback, screen)


async def on_pay(
    callback: CallbackQuery,
    callback_data: ClientPay,
    client: Client,
    session: AsyncSession,
    settings: Settings,
    bot: Bot,
) -> None:
    """A Telegram invoice for what the client's own order owes; the checkout and the
    payment are handled by ``handlers.payments`` (recorded exactly once)."""
    token = settings.payments_provider_token
    if token is None:
        await refuse(callback, session, client, reason="payments_off")
        return
    try:
        draft = await payments.invoice_for(
            session,
            callback_data.order_id,
            secret=settings.payments_secret(),
            client_id=client.id,
        )
    except PaymentRefused as refused:
        if refused.problem is PaymentProblem.ORDER_NOT_FOUND:
            await refuse(callback, session, client, reason="not_own_order")
            return
        await callback.answer(payment_problem(refused), show_alert=True)
        return
    await callback.answer()
    try:
        await bot.send_invoice(
            chat_id=client.telegram_chat_id or callback.from_user.id,
            title=draft.title,
            description=draft.description,
            payload=draft.payload,
            provider_token=token.get_secret_value(),
            currency=draft.currency,
            prices=[LabeledPrice(label=draft.title, amount=draft.amount_kopecks)],
        )
    except TelegramAPIError as exc:
        logger.warning("could not send a client their invoice: %s", exc)
        return
    audit.record(
        session,
        "invoice.sent",
        actor_telegram_id=callback.from_user.id,
        entity="document",
        entity_id=draft.order_id,
        details={"amount": draft.amount_kopecks, "by": "client", "client_id": client.id},
    )
    await session.commit()


async def on_unknown_press(callback: CallbackQuery, client: Client, session: AsyncSession) -> None:
    await refuse(callback, session, client, reason="unknown")
