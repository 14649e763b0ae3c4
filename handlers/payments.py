"""Payments and documents from the Orders tab (the seed's items 5 and 7).

Staff: **Pay** (cash desk) and **ПКО** (cash receipt order) on an order, the amount
defaulting to the debt; an invoice or a sale made on the basis of a customer order; a new
order or repair request. Clients: a Telegram invoice, its pre-checkout and the successful
payment. The rules are in ``services.payments`` and ``services.documents``; here only the
conversation.
"""

from __future__ import annotations

import logging
import secrets
from decimal import Decimal, InvalidOperation

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    PreCheckoutQuery,
)
from aiogram.utils.i18n import gettext as _
from babel.numbers import NumberFormatError, parse_decimal
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import IsStaff, Magic, fmt
from handlers.callbacks import (
    NewDocument,
    OpenDocument,
    OrderDocument,
    PayConfirm,
    PayStart,
    SendInvoice,
)
from handlers.navigation import refuse, screen_context, show
from handlers.screens import Screen, render
from services import audit, documents, ledger, payments
from services.access import Permission, can
from services.documents import DocumentProblem, DocumentRefused
from services.payments import PaymentProblem, PaymentRefused
from services.search import SearchService
from storage.models import Client, PaymentMethod, Staff

logger = logging.getLogger(__name__)

METHODS = {m.value: m for m in (PaymentMethod.CASH_DESK, PaymentMethod.CASH_RECEIPT)}


class PayAmount(StatesGroup):
    typing = State()


def make_router() -> Router:
    """Staff: payments and documents from orders."""
    router = Router(name="payments")
    router.message.filter(IsStaff())
    router.callback_query.filter(IsStaff())
    router.callback_query.register(start_payment, PayStart.filter())
    router.message.register(typed_amount, StateFilter(PayAmount.typing), Magic(F.text))
    router.callback_query.register(confirm_payment, PayConfirm.filter())
    router.callback_query.register(send_invoice, SendInvoice.filter())
    router.callback_query.register(order_document, OrderDocument.filter())
    router.callback_query.register(new_document, NewDocument.filter())
    return router


def make_client_router() -> Router:
    """Anyone (the client paying is not staff): the checkout and the payment. Included
    before the strangers' stop."""
    router = Router(name="telegram-payments")
    router.pre_checkout_query.register(pre_checkout)
    router.message.register(successful_payment, Magic(F.successful_payment))
    return router


def payment_problem(refused: PaymentRefused) -> str:
    debt = fmt.money(refused.debt) if refused.debt is not None else "—"
    return {
        PaymentProblem.FORBIDDEN: _("Your role cannot take payments."),
        PaymentProblem.ORDER_NOT_FOUND: _("The order is gone."),
        PaymentProblem.NOT_AN_ORDER: _("This document cannot be paid."),
        PaymentProblem.ORDER_CANCELLED: _("The order is cancelled."),
        PaymentProblem.NOT_CHARGED: _("The work order is still a request: nothing to pay yet."),
        PaymentProblem.NOTHING_DUE: _("Nothing is due on this order."),
        PaymentProblem.NOT_POSITIVE: _("The amount must be more than zero."),
        PaymentProblem.MORE_THAN_DEBT: _("That is more than the debt ({debt}).").format(debt=debt),
        PaymentProblem.OUT_OF_TELEGRAM_LIMITS: _(
            "Telegram takes between {low} and {high} in one payment."
        ).format(
            low=fmt.money(payments.TELEGRAM_MIN_RUB), high=fmt.money(payments.TELEGRAM_MAX_RUB)
        ),
        PaymentProblem.KEY_REUSED: _("This button is out of date."),
    }.get(
        refused.problem,
        _("The payment was refused ({reason}).").format(reason=refused.problem.value),
    )


def document_problem(refused: DocumentRefused) -> str:
    return {
        DocumentProblem.FORBIDDEN: _("Your role cannot make documents."),
        DocumentProblem.NOT_FOUND: _("The order is gone."),
        DocumentProblem.ORDER_CANCELLED: _("The order is cancelled: no documents from it."),
        DocumentProblem.ORDER_NOT_OPEN: _("The order is not open."),
        DocumentProblem.NOTHING_TO_SHIP: _("Every item of the order has been shipped already."),
        DocumentProblem.HAS_SALES: _(
            "Goods of this order were shipped: it cannot be cancelled (a return is needed)."
        ),
    }.get(
        refused.problem,
        _("The document was refused ({reason}).").format(reason=refused.problem.value),
    )


# --- cash desk and cash receipt order ---------------------------------------------------


def _method_name(method: PaymentMethod) -> str:
    return _("cash desk") if method is PaymentMethod.CASH_DESK else _("cash receipt order")


async def start_payment(
    callback: CallbackQuery,
    callback_data: PayStart,
    session: AsyncSession,
    staff: Staff,
    state: FSMContext,
) -> None:
    method = METHODS.get(callback_data.method)
    if method is None or not can(staff, Permission.PAYMENTS):
        await refuse(
            callback,
            session,
            staff,
            reason="forbidden" if method else "malformed",
            detail="payment",
        )
        return
    balance = await ledger.document_balance(session, callback_data.order_id)
    if balance is None or balance.debt <= 0:
        await refuse(callback, session, staff, reason="stale", detail="order")
        return
    nonce = secrets.token_hex(4)
    await state.set_state(PayAmount.typing)
    await state.update_data(
        pay={"order": balance.document.id, "method": method.value, "nonce": nonce}
    )
    await callback.answer()
    text = "\n".join(
        [
            _("Payment for {number} ({method}).").format(
                number=f"<b>{fmt.q(balance.document.number)}</b>", method=_method_name(method)
            ),
            _("Due on the order: {amount}").format(amount=fmt.money(balance.debt)),
            "",
            _("Pay the whole debt, or type the amount received (e.g. 1500 or 1 500,50)."),
        ]
    )
    await show(
        callback, Screen(text, _confirm_markup(balance.document.id, method, balance.debt, nonce))
    )


def _confirm_markup(
    order_id: int, method: PaymentMethod, amount: int, nonce: str
) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("Take {amount}").format(amount=fmt.money(amount)),
                    callback_data=PayConfirm(
                        order_id=order_id, method=method.value, amount=amount, nonce=nonce
                    ).pack(),
                )
            ],
            [
                InlineKeyboardButton(
                    text=_("Cancel"), callback_data=OpenDocument(document_id=order_id).pack()
                )
            ],
        ]
    )


def parse_amount(text: str, locale: str) -> int | None:
    """ "1500", "1 500,50", "1500.5 ₽" -> kopecks; None when it is not an amount."""
    cleaned = text.replace("₽", "").replace("руб", "").replace("\u00a0", " ").strip()
    cleaned = cleaned.replace(" ", "")
    if not cleaned:
        return None
    for attempt in (cleaned, cleaned.replace(",", "."), cleaned.replace(".", ",")):
        try:
            value = parse_decimal(attempt, locale=locale, strict=False)
            break
        except NumberFormatError:
            continue
    else:
        try:
            value = Decimal(cleaned.replace(",", "."))
        except InvalidOperation:
            return None
    if value != value.quantize(Decimal("0.01")):
        return None
    return int(value * 100)


async def typed_amount(message: Message, session: AsyncSession, state: FSMContext) -> None:
    data = (await state.get_data()).get("pay") or {}
    amount = parse_amount(message.text or "", fmt.locale())
    if not data:
        await state.clear()
        return
    if amount is None:
        await message.answer(_("That is not an amount. Type it like 1500 or 1 500,50."))
        return
    balance = await ledger.document_balance(session, data["order"])
    if balance is None:
        await state.clear()
        await message.answer(_("The order is gone."))
        return
    if amount <= 0:
        await message.answer(_("The amount must be more than zero."))
        return
    if amount > balance.debt:
        await message.answer(
            _("That is more than the debt ({debt}).").format(debt=fmt.money(balance.debt))
        )
        return
    method = METHODS[data["method"]]
    await message.answer(
        _("Take {amount} for {number} ({method})?").format(
            amount=fmt.money(amount),
            number=fmt.q(balance.document.number),
            method=_method_name(method),
        ),
        reply_markup=_confirm_markup(balance.document.id, method, amount, data["nonce"]),
    )


async def confirm_payment(
    callback: CallbackQuery,
    callback_data: PayConfirm,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    method = METHODS.get(callback_data.method)
    if method is None:
        await refuse(callback, session, staff, reason="malformed", detail="payment method")
        return
    try:
        outcome = await payments.take_payment(
            session,
            order_id=callback_data.order_id,
            amount=callback_data.amount,
            method=method,
            cashier=staff,
            idempotency_key=f"tg:{staff.id}:{callback_data.order_id}:{callback_data.nonce}",
            prefix=settings.document_prefix,
        )
        await session.commit()
    except PaymentRefused as refused:
        await session.commit()  # refusals are audited
        if refused.problem is PaymentProblem.FORBIDDEN:
            await refuse(callback, session, staff, reason="forbidden", detail="payment")
            return
        await callback.answer(payment_problem(refused), show_alert=True)
        return
    await state.clear()
    await callback.answer(_("Payment recorded."))
    text = "\n".join(
        [
            "✅ "
            + _("Payment {number}: {amount} for {order} ({method}).").format(
                number=f"<b>{fmt.q(outcome.number)}</b>",
                amount=fmt.money(outcome.amount),
                order=fmt.q(outcome.order_number),
                method=_method_name(method),
            ),
            _("Debt on the order now: {amount}").format(amount=fmt.money(outcome.debt_after)),
        ]
    )
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("Open the order"),
                    callback_data=OpenDocument(document_id=outcome.order_id).pack(),
                )
            ]
        ]
    )
    await show(callback, Screen(text, markup))


# --- Telegram invoices ------------------------------------------------------------------


async def send_invoice(
    callback: CallbackQuery,
    callback_data: SendInvoice,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    bot: Bot,
) -> None:
    token = settings.payments_provider_token
    if not can(staff, Permission.PAYMENTS) or token is None:
        await refuse(callback, session, staff, reason="forbidden", detail="invoice")
        return
    balance = await ledger.document_balance(session, callback_data.order_id)
    client = await session.get(Client, balance.document.client_id) if balance else None
    if client is None or client.telegram_chat_id is None:
        await refuse(callback, session, staff, reason="stale", detail="invoice")
        return
    try:
        draft = await payments.invoice_for(
            session, callback_data.order_id, secret=settings.payments_secret()
        )
    except PaymentRefused as refused:
        await callback.answer(payment_problem(refused), show_alert=True)
        return
    try:
        await bot.send_invoice(
            chat_id=client.telegram_chat_id,
            title=draft.title,
            description=draft.description,
            payload=draft.payload,
            provider_token=token.get_secret_value(),
            currency=draft.currency,
            prices=[LabeledPrice(label=draft.title, amount=draft.amount_kopecks)],
        )
    except (TelegramForbiddenError, TelegramBadRequest) as exc:
        await callback.answer(
            _("The client cannot be reached in Telegram: {reason}").format(reason=exc.message),
            show_alert=True,
        )
        return
    audit.record(
        session,
        "invoice.sent",
        actor=staff,
        entity="document",
        entity_id=draft.order_id,
        details={"amount": draft.amount_kopecks, "chat_id": client.telegram_chat_id},
    )
    await session.commit()
    await callback.answer(
        _("Invoice for {amount} sent to the client.").format(
            amount=fmt.money(draft.amount_kopecks)
        ),
        show_alert=True,
    )


async def pre_checkout(query: PreCheckoutQuery, session: AsyncSession, settings: Settings) -> None:
    """Answered at once: Telegram waits ten seconds at most."""
    problem = await payments.check_pre_checkout(
        session,
        query.invoice_payload,
        query.total_amount,
        query.currency,
        secret=settings.payments_secret(),
    )
    if problem is None:
        await query.answer(ok=True)
        return
    reasons = {
        PaymentProblem.NOTHING_DUE: _("This order is already paid."),
        PaymentProblem.ORDER_CANCELLED: _("This order was cancelled."),
        PaymentProblem.MORE_THAN_DEBT: _("The amount due has changed. Ask for a new invoice."),
        PaymentProblem.AMOUNT_MISMATCH: _("The amount due has changed. Ask for a new invoice."),
    }
    await query.answer(
        ok=False, error_message=reasons.get(problem, _("This invoice cannot be paid any more."))
    )


async def successful_payment(
    message: Message,
    session: AsyncSession,
    settings: Settings,
    critical: dict[str, bool] | None = None,
) -> None:
    """Recorded within the update, never as a task of its own: the update counts as
    handled only once the payment is committed (see ``bot.app`` on critical updates)."""
    paid = message.successful_payment
    assert paid is not None
    try:
        outcome = await payments.record_telegram_payment(
            session,
            paid.invoice_payload,
            paid.total_amount,
            paid.currency,
            paid.telegram_payment_charge_id,
            paid.provider_payment_charge_id,
            secret=settings.payments_secret(),
            prefix=settings.document_prefix,
            payer_telegram_id=message.from_user.id if message.from_user else None,
        )
    except PaymentRefused as refused:
        # Money was taken for something we cannot book: keep the charge id for the staff.
        audit.record(
            session,
            "payment.unbooked",
            actor_telegram_id=message.chat.id,
            details={
                "charge_id": paid.telegram_payment_charge_id,
                "problem": refused.problem.value,
                "amount": paid.total_amount,
            },
        )
        await session.commit()
        _committed(critical)
        logger.error("a Telegram payment could not be booked: %s", refused.problem.value)
        await message.answer(_("Payment received. The shop will contact you to confirm it."))
        return
    await session.commit()
    _committed(critical)
    if not outcome.replayed:
        await message.answer(
            _("Payment received: {amount} for {order}. Thank you!").format(
                amount=fmt.money(outcome.amount), order=fmt.q(outcome.order_number)
            )
        )


def _committed(critical: dict[str, bool] | None) -> None:
    """Tell the dispatcher the payment is safe: Telegram may now be told it arrived."""
    if critical is not None:
        critical["committed"] = True


# --- documents from an order, new documents -----------------------------------------------


async def order_document(
    callback: CallbackQuery,
    callback_data: OrderDocument,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    make = {"invoice": documents.create_invoice, "sale": documents.create_sale}.get(
        callback_data.kind
    )
    if make is None or not can(staff, Permission.DOCUMENTS):
        await refuse(
            callback,
            session,
            staff,
            reason="forbidden" if make else "malformed",
            detail="document",
        )
        return
    try:
        doc = await make(
            session, callback_data.order_id, actor=staff, prefix=settings.document_prefix
        )
        await session.commit()
    except DocumentRefused as refused:
        await session.rollback()
        await callback.answer(document_problem(refused), show_alert=True)
        return
    await callback.answer(
        _("{kind} {number} made.").format(
            kind=_("Invoice") if callback_data.kind == "invoice" else _("Sale"), number=doc.number
        )
    )
    ctx = screen_context(session, staff, settings, search_service, state)
    await show(callback, await render(OpenDocument(document_id=doc.id), ctx))


async def new_document(
    callback: CallbackQuery,
    callback_data: NewDocument,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    make = {
        "order": documents.create_customer_order,
        "request": documents.create_repair_request,
    }.get(callback_data.kind)
    if make is None or not can(staff, Permission.DOCUMENTS):
        await refuse(
            callback,
            session,
            staff,
            reason="forbidden" if make else "malformed",
            detail="document",
        )
        return
    try:
        doc = await make(
            session,
            client_id=callback_data.client_id,
            actor=staff,
            prefix=settings.document_prefix,
            car_id=callback_data.car_id or None,
        )
        await session.commit()
    except DocumentRefused as refused:
        await session.rollback()
        if refused.problem in (DocumentProblem.CLIENT_NOT_FOUND, DocumentProblem.CAR_NOT_LINKED):
            await refuse(callback, session, staff, reason="stale", detail="client or car")
            return
        await callback.answer(document_problem(refused), show_alert=True)
        return
    await callback.answer()
    ctx = screen_context(session, staff, settings, search_service, state)
    await show(callback, await render(OpenDocument(document_id=doc.id), ctx))
