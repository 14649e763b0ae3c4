"""Estimates (Калькуляция): the staff's estimate screen and its actions, the message the
client gets (the ``Kind.ESTIMATE`` renderer: a line per line with approve / decline
buttons), the client's presses, and the staff's notice when every line is decided.

The client's router is not staff-only (a client is not staff): it is included before the
strangers' stop and checks by itself that the press comes from the estimate's client's
own private chat, on the version in force. Anyone else, and any old version, is told the
button is out of date and learns nothing; the refusal is audited. The rules are in
``services.estimates``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import IsStaff, fmt
from handlers.alerts import AlertContext, Rendered, renders
from handlers.callbacks import (
    CartView,
    EstimateAction,
    EstimateDecide,
    OpenDocument,
    OpenEstimate,
)
from handlers.cart import estimate_state_name, line_text
from handlers.fmt import q
from handlers.navigation import refuse, screen_context, show
from handlers.screens import (
    BUTTON_CHARS,
    Forbidden,
    Screen,
    ScreenContext,
    Stale,
    back_button,
    doc_type_name,
    render,
)
from services import audit, estimates
from services.access import Permission, can
from services.estimates import EstimateProblem, EstimateRefused, EstimateView
from services.outbox import Kind
from services.search import SearchService
from storage.models import (
    Car,
    Document,
    EstimateLine,
    EstimateState,
    LineDecision,
    Notification,
    Staff,
)

logger = logging.getLogger(__name__)

CLIENT_ITEM_CHARS = 24  # of an item's name on the client's buttons
STALE = frozenset(
    {EstimateProblem.FORBIDDEN, EstimateProblem.NOT_FOUND, EstimateProblem.OUT_OF_DATE}
)
MARKS = {LineDecision.APPROVED: "✅", LineDecision.DECLINED: "❌", None: "⏳"}


def make_router() -> Router:
    """Staff: the estimate's actions (its screen is ``handlers.screens``' ``OpenEstimate``)."""
    router = Router(name="estimate")
    router.callback_query.filter(IsStaff())
    router.callback_query.register(on_action, EstimateAction.filter())
    return router


def make_client_router() -> Router:
    """Anyone: the client's approve / decline presses. Included before the strangers' stop."""
    router = Router(name="estimate-client")
    router.callback_query.register(on_decide, EstimateDecide.filter())
    return router


def _line(line: EstimateLine) -> str:
    return line_text(
        line.line_no,
        line.kind,
        line.item,
        line.catalogue_number,
        line.maker,
        line.qty_milli,
        line.norm_hours_milli,
        line.price,
        line.discount_bp,
        line.amount,
    )


def problem_text(refused: EstimateRefused) -> str:
    return {
        EstimateProblem.NOT_LINKED: _(
            "The client has no Telegram chat with the shop: send the invite link first."
        ),
        EstimateProblem.OPTED_OUT: _(
            "The client turned the bot's messages off (/stop): call them, or ask them to send "
            "/start to the bot."
        ),
        EstimateProblem.UNREACHABLE: _(
            "The client's chat cannot be reached (the bot is blocked): call the client."
        ),
        EstimateProblem.EMPTY: _("Nothing to send or add: no lines."),
        EstimateProblem.FULL: _("An estimate has at most {count} lines.").format(
            count=estimates.MAX_LINES
        ),
        EstimateProblem.NOT_DECIDED: _("The client has not decided every line yet."),
        EstimateProblem.NOTHING_APPROVED: _("The client approved nothing."),
        EstimateProblem.ALREADY_DONE: _("The work order was made already."),
    }.get(
        refused.problem, _("The estimate was refused ({reason}).").format(reason=refused.problem)
    )


# --- the staff's screen ---------------------------------------------------------------


async def estimate_screen(cb: OpenEstimate, ctx: ScreenContext) -> Screen:
    ctx.require(Permission.CART_VIEW)
    view = await estimates.get_view(ctx.session, cb.estimate_id)
    if view is None:
        raise Stale("estimate")
    e = view.estimate
    tz = ctx.settings.tz
    car = await ctx.session.get(Car, e.car_id) if e.car_id else None
    head = [
        "🧮 <b>"
        + _("Estimate №{number}, version {version}").format(number=e.id, version=e.version)
        + "</b>",
        _("Client: {name}").format(name=q(view.client_name)),
    ]
    if car is not None:
        head.append(_("Car: {car}").format(car=q(f"{car.plate or car.vin or ''} {car.name}")))
    head.append(_("State: {state}").format(state=estimate_state_name(e.state)))
    if e.sent_at:
        head.append(_("Sent: {when}").format(when=fmt.when(e.sent_at, tz)))
    blocks = [""]
    for line in view.lines:
        blocks.append(f"{MARKS[line.decision]} {_line(line)}")
    if not view.lines:
        blocks.append(_("No lines."))
    blocks.append("")
    blocks.append("<b>" + _("Total: {amount}").format(amount=fmt.money(view.total)) + "</b>")
    if view.decisions:
        blocks += ["", "<b>" + _("The client's decisions") + "</b>"]
    for d in view.decisions:
        who = _("{name} in Telegram").format(name=q(view.client_name))
        blocks.append(
            _(
                "Version {version}: approved {approved} of {lines} for {total}, declined "
                "{declined}; {who}, {when}"
            ).format(
                version=d.version,
                approved=d.approved,
                lines=d.lines,
                total=fmt.money(d.approved_total),
                declined=d.declined,
                who=who,
                when=fmt.when(d.last_at, tz),
            )
            + ("" if d.complete else " " + _("(not finished)"))
        )
    builder = InlineKeyboardBuilder()
    staff = ctx.staff
    if can(staff, Permission.ESTIMATES) and e.work_order_id is None:
        state = EstimateState(e.state)
        if state is EstimateState.DRAFT and view.lines and view.client_chat_id is not None:
            builder.row(_action(_("📨 Send to the client"), e.id, e.version, "send"))
        removes = [
            _action(f"✖ {line.line_no}", e.id, e.version, "del", line.line_no)
            for line in view.lines
        ]
        for i in range(0, len(removes), 6):
            builder.row(*removes[i : i + 6])
        in_cart = await estimates.cart_size(ctx.session, e)
        if in_cart:
            builder.row(
                _action(_("Add the cart ({count})").format(count=in_cart), e.id, e.version, "add")
            )
        approved = any(x.decision is LineDecision.APPROVED for x in view.lines)
        if state is EstimateState.DECIDED and approved and can(staff, Permission.DOCUMENTS):
            builder.row(_action(_("→ Work order of the approved lines"), e.id, e.version, "wo"))
    for doc_id in (e.work_order_id, e.plan_id):
        if doc_id is None:
            continue
        doc = await ctx.session.get(Document, doc_id)
        if doc is not None:
            builder.row(
                InlineKeyboardButton(
                    text=fmt.cut(f"📄 {doc_type_name(doc.doc_type)} {doc.number}", BUTTON_CHARS),
                    callback_data=OpenDocument(document_id=doc.id).pack(),
                )
            )
    builder.row(
        InlineKeyboardButton(
            text=_("🛒 Cart"),
            callback_data=CartView(client_id=e.client_id, car_id=e.car_id or 0).pack(),
        )
    )
    builder.row(back_button())
    return Screen(fmt.paginate("\n".join(head), blocks)[0], builder.as_markup())


def _action(
    text: str, estimate_id: int, version: int, action: str, line_no: int = 0
) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=text,
        callback_data=EstimateAction(
            estimate_id=estimate_id, version=version, action=action, line_no=line_no
        ).pack(),
    )


async def on_action(
    callback: CallbackQuery,
    callback_data: EstimateAction,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    cb = callback_data
    common: dict[str, Any] = {"staff": staff, "estimate_id": cb.estimate_id, "version": cb.version}
    try:
        if cb.action == "send":
            await estimates.send(session, **common)
            done = _("Sent to the client.")
        elif cb.action == "del":
            await estimates.remove_line(session, line_no=cb.line_no, **common)
            done = _("Removed.")
        elif cb.action == "add":
            await estimates.add_cart(session, **common)
            done = _("Added.")
        elif cb.action == "wo":
            order = await estimates.to_work_order(
                session, prefix=settings.document_prefix, **common
            )
            done = _("{number} made.").format(number=order.number)
        else:
            await refuse(callback, session, staff, reason="malformed", detail="estimate action")
            return
        await session.commit()
    except EstimateRefused as refused:
        await session.rollback()
        if refused.problem in STALE:
            reason = "forbidden" if refused.problem is EstimateProblem.FORBIDDEN else "stale"
            await refuse(callback, session, staff, reason=reason, detail=f"estimate {refused}")
        else:
            await callback.answer(problem_text(refused), show_alert=True)
        return
    await callback.answer(done)
    ctx = screen_context(session, staff, settings, search_service, state)
    try:
        screen = await render(OpenEstimate(estimate_id=cb.estimate_id), ctx)
    except (Forbidden, Stale):
        return
    await show(callback, screen)


# --- the client's message -------------------------------------------------------------


def client_message(view: EstimateView, car: Car | None) -> Rendered:
    """What the client sees: the lines, marks for those decided, the approved total so
    far, and a pair of buttons for each line still to decide."""
    e = view.estimate
    title = _("Estimate №{number} (version {version})").format(number=e.id, version=e.version)
    lines = ["🧮 <b>" + title + "</b>"]
    if car is not None:
        lines.append(q(f"{car.name} {car.plate or ''}".strip()))
    lines.append("")
    for line in view.lines:
        lines.append(f"{MARKS[line.decision]} {_line(line)}")
    lines += [
        "",
        _("Total: {amount}").format(amount=fmt.money(view.total)),
        "<b>" + _("Approved: {amount}").format(amount=fmt.money(view.approved_total)) + "</b>",
    ]
    undecided = [x for x in view.lines if x.decision is None]
    if undecided and EstimateState(e.state) is EstimateState.SENT:
        lines += ["", _("Approve ✅ or decline ❌ each line.")]
    else:
        lines += ["", _("Thank you! The shop has your decision.")]
    markup = None
    if undecided and EstimateState(e.state) is EstimateState.SENT:
        rows = []
        for x in undecided:
            name = fmt.cut(x.item, CLIENT_ITEM_CHARS)
            rows.append(
                [
                    InlineKeyboardButton(
                        text=f"✅ {x.line_no}. {name}",
                        callback_data=EstimateDecide(
                            estimate_id=e.id, version=e.version, line_id=x.id, ok=1
                        ).pack(),
                    ),
                    InlineKeyboardButton(
                        text=f"❌ {x.line_no}",
                        callback_data=EstimateDecide(
                            estimate_id=e.id, version=e.version, line_id=x.id, ok=0
                        ).pack(),
                    ),
                ]
            )
        markup = InlineKeyboardMarkup(inline_keyboard=rows)
    return Rendered(fmt.paginate(lines[0], lines[1:])[0], markup)


@renders(Kind.ESTIMATE)
async def render_estimate(
    session: AsyncSession, notification: Notification, ctx: AlertContext
) -> Rendered | None:
    """The estimate's version for the client; None once it is superseded or not waiting."""
    payload = notification.payload or {}
    view = await estimates.get_view(session, int(payload.get("estimate_id", 0)))
    if view is None:
        return None
    e = view.estimate
    if e.version != payload.get("version") or EstimateState(e.state) is not EstimateState.SENT:
        return None
    if e.client_id != notification.client_id:
        return None
    car = await session.get(Car, e.car_id) if e.car_id else None
    return client_message(view, car)


@renders(Kind.ESTIMATE_DECIDED)
async def render_estimate_decided(
    session: AsyncSession, notification: Notification, ctx: AlertContext
) -> Rendered | None:
    """Tells staff the client decided every line of a version."""
    payload = notification.payload or {}
    view = await estimates.get_view(session, int(payload.get("estimate_id", 0)))
    if view is None:
        return None
    decision = next((d for d in view.decisions if d.version == payload.get("version")), None)
    if decision is None:
        return None
    line = _(
        "{client} decided on estimate №{number} (version {version}): approved {approved} of "
        "{lines}, {total}."
    ).format(
        client=q(view.client_name),
        number=view.estimate.id,
        version=decision.version,
        approved=decision.approved,
        lines=decision.lines,
        total=fmt.money(decision.approved_total),
    )
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("Open the estimate"),
                    callback_data=OpenEstimate(estimate_id=view.estimate.id).pack(),
                )
            ]
        ]
    )
    return Rendered("🧮 " + line, markup, digest_line=line)


async def on_decide(
    callback: CallbackQuery,
    callback_data: EstimateDecide,
    session: AsyncSession,
    settings: Settings,
) -> None:
    user = callback.from_user
    message = callback.message
    private = message is not None and message.chat.type == ChatType.PRIVATE
    cb = callback_data
    try:
        if not private or message is None or message.chat.id != user.id:
            raise EstimateRefused(EstimateProblem.NOT_THE_CLIENT, "not the private chat")
        decided = await estimates.decide(
            session,
            estimate_id=cb.estimate_id,
            version=cb.version,
            line_id=cb.line_id,
            approve=bool(cb.ok),
            chat_id=user.id,
            prefix=settings.document_prefix,
        )
        await session.commit()
    except EstimateRefused as refused:
        await session.rollback()
        audit.record(
            session,
            "estimate.refused",
            actor_telegram_id=user.id,
            entity="estimate",
            entity_id=cb.estimate_id,
            details={"reason": refused.problem.value, "data": (callback.data or "")[:64]},
        )
        await session.commit()
        await callback.answer(_("This button is out of date."), show_alert=True)
        return
    if not decided.changed:
        await callback.answer(_("Your decision on this line is recorded already."))
    elif cb.ok:
        await callback.answer(_("Approved."))
    else:
        await callback.answer(_("Declined."))
    view = await estimates.get_view(session, cb.estimate_id)
    if view is None or not isinstance(message, Message):
        return
    car = await session.get(Car, view.estimate.car_id) if view.estimate.car_id else None
    shown = client_message(view, car)
    try:
        await message.edit_text(shown.text, reply_markup=shown.markup)
    except TelegramBadRequest as exc:
        if "not modified" not in str(exc):
            logger.info("cannot edit the estimate message: %s", exc)


__all__ = [
    "client_message",
    "estimate_screen",
    "make_client_router",
    "make_router",
    "render_estimate",
    "render_estimate_decided",
]
