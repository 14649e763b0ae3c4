"""The client card's Cart tab (Корзина): pick goods and works from the price list (typed
search) and from the car's repair plan, change quantities, and turn the cart into a
customer order, a work order or an estimate in one press.

The rules are in ``services.cart``; here the conversation. Every press re-checks the
role and re-reads the cart; a forged or stale press is refused and audited
(``handlers.navigation.refuse``). Typed input (the search text, a quantity) is an FSM
dialog that ends with the answer; the screen trail of ``handlers.navigation`` is kept.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import IsStaff, Magic, dialogs, fmt
from handlers.callbacks import (
    CartAction,
    CartView,
    OpenDocument,
    OpenEstimate,
    PlanPick,
    PricePick,
)
from handlers.fmt import q
from handlers.navigation import refuse, screen_context, show
from handlers.screens import (
    BUTTON_CHARS,
    Forbidden,
    Screen,
    ScreenContext,
    Stale,
    back_button,
    client_header,
    render,
)
from services import cards, estimates, pricelist
from services import cart as carts
from services.access import Permission, can
from services.cart import CartProblem, CartRefused, Target
from services.search import SearchService
from storage.models import EstimateState, LineKind, Staff

DIALOG = "cart_dialog"
CAR_BUTTONS = 4
# Refusals that mean the press is forged or stale: answered "out of date" and audited.
STALE = frozenset(
    {
        CartProblem.FORBIDDEN,
        CartProblem.CLIENT_NOT_FOUND,
        CartProblem.CAR_NOT_LINKED,
        CartProblem.ITEM_NOT_FOUND,
        CartProblem.LINE_NOT_FOUND,
        CartProblem.NOT_A_PLAN_LINE,
    }
)


class CartDialog(StatesGroup):
    search = State()
    quantity = State()


def make_router() -> Router:
    router = Router(name="cart")
    router.message.filter(IsStaff())
    router.callback_query.filter(IsStaff())
    router.callback_query.register(on_action, CartAction.filter())
    router.callback_query.register(on_price_pick, PricePick.filter())
    router.callback_query.register(on_plan_pick, PlanPick.filter())
    router.message.register(
        on_search_text, StateFilter(CartDialog.search), Magic(F.text), dialogs.not_a_command
    )
    router.message.register(
        on_quantity, StateFilter(CartDialog.quantity), Magic(F.text), dialogs.not_a_command
    )
    return router


# --- texts ------------------------------------------------------------------------------


def problem_text(refused: CartRefused) -> str:
    return {
        CartProblem.ALREADY_IN_CART: _("This line is in the cart already."),
        CartProblem.BAD_QUANTITY: _("The quantity must be more than zero."),
        CartProblem.EMPTY: _("The cart is empty."),
        CartProblem.FULL: _("The cart is full: at most {count} lines.").format(
            count=carts.MAX_LINES
        ),
        CartProblem.NO_PRICE: _("{item} has no price: set one in the price list.").format(
            item=refused.detail
        ),
        CartProblem.WORKS_IN_ORDER: _(
            "A customer order is for goods; make a work order for the works."
        ),
    }.get(refused.problem, _("The cart was refused ({reason}).").format(reason=refused.problem))


def line_text(
    no: int,
    kind: LineKind,
    item: str,
    catalogue_number: str | None,
    maker: str | None,
    qty_milli: int,
    norm_hours_milli: int | None,
    price: int | None,
    discount_bp: int,
    amount: int,
) -> str:
    """One line of a cart or an estimate, the way document lines read."""
    number = f" [{q(catalogue_number)}]" if catalogue_number else ""
    made_by = f" · {q(maker)}" if maker else ""
    if price is None:
        return f"{no}. {q(item)}{number}{made_by}\n    {fmt.qty(qty_milli)} × " + _("no price")
    if LineKind(kind) is LineKind.WORK and norm_hours_milli is not None:
        each = _("{hours} h × {rate}").format(
            hours=fmt.qty(norm_hours_milli), rate=fmt.money(price)
        )
    else:
        each = fmt.money(price)
    disc = f" · −{fmt.percent(discount_bp)}" if discount_bp else ""
    return (
        f"{no}. {q(item)}{number}{made_by}\n    {fmt.qty(qty_milli)} × {each}{disc}"
        f" = <b>{fmt.money(amount)}</b>"
    )


def _car_label(car: cards.ClientCarInfo) -> str:
    return car.plate or car.vin or car.body_number or car.name


# --- the cart screen ------------------------------------------------------------------------


async def cart_tab(card: cards.ClientCard, ctx: ScreenContext) -> Screen:
    """The Cart tab of the card (read by the caller): the cart of the car with lines, else
    the first car's."""
    ctx.require(Permission.CART_VIEW)
    counts = await carts.counts(ctx.session, card.id)
    car_ids = [c.id for c in card.cars]
    car_id = next((c for c in car_ids if counts.get(c)), None)
    if car_id is None and not counts.get(None):
        car_id = car_ids[0] if car_ids else None
    return await _cart(card, car_id or 0, counts, ctx)


async def cart_screen(cb: CartView, ctx: ScreenContext) -> Screen:
    ctx.require(Permission.CART_VIEW)
    card = await cards.client_card(ctx.session, cb.client_id)
    if card is None:
        raise Stale("client")
    return await _cart(card, cb.car_id, await carts.counts(ctx.session, card.id), ctx)


async def _cart(
    card: cards.ClientCard, car_id: int, counts: dict[int | None, int], ctx: ScreenContext
) -> Screen:
    """The cart of ``car_id`` (0: goods without a car); ``counts``: lines in each cart."""
    car = next((c for c in card.cars if c.id == car_id), None)
    if car_id and car is None:
        raise Stale("car")
    view = await carts.view(ctx.session, card.id, car_id or None)
    staff = ctx.staff
    where = (
        _("for {car}").format(car=q(f"{_car_label(car)} · {car.name}"))
        if car
        else _("without a car")
    )
    terms = view.terms
    lines = [
        *client_header(card),
        "",
        "🛒 <b>" + _("Cart") + "</b> " + where,
        _("Price type: {name}").format(name=q(terms.price_type or _("retail"))),
    ]
    if terms.card_number:
        lines.append(
            _("Discount card: {number} ({discount})").format(
                number=q(terms.card_number), discount=fmt.percent(terms.discount_bp)
            )
        )
    lines.append("")
    for no, p in enumerate(view.lines, start=1):
        lines.append(
            line_text(
                no,
                p.kind,
                p.item,
                p.catalogue_number,
                p.maker,
                p.qty_milli,
                p.norm_hours_milli,
                p.price,
                p.discount_bp,
                p.amount,
            )
        )
    if view.lines:
        lines += ["", "<b>" + _("Total: {amount}").format(amount=fmt.money(view.total)) + "</b>"]
    else:
        lines.append(_("The cart is empty."))
    builder = InlineKeyboardBuilder()
    edits = []
    for no, p in enumerate(view.lines, start=1):
        if carts.may_edit(staff, p.kind, p.source):
            act = CartAction(client_id=card.id, car_id=car_id, action="qty", line_id=p.id)
            edits.append(InlineKeyboardButton(text=f"✏️ {no}", callback_data=act.pack()))
            act = CartAction(client_id=card.id, car_id=car_id, action="del", line_id=p.id)
            edits.append(InlineKeyboardButton(text=f"✖ {no}", callback_data=act.pack()))
    for i in range(0, len(edits), 6):
        builder.row(*edits[i : i + 6])
    pick = []
    if can(staff, Permission.CART):
        pick.append(_button(_("🔎 Price list"), card.id, car_id, "find"))
    if car is not None and carts.may_pick_plan(staff):
        pick.append(_button(_("📋 Repair plan"), card.id, car_id, "plan"))
    if pick:
        builder.row(*pick)
    if view.lines and can(staff, Permission.CART) and can(staff, Permission.DOCUMENTS):
        row = []
        if all(p.kind is LineKind.GOODS for p in view.lines):
            row.append(_button(_("→ Customer order"), card.id, car_id, "order"))
        row.append(_button(_("→ Work order"), card.id, car_id, "wo"))
        builder.row(*row)
    if view.lines and can(staff, Permission.ESTIMATES):
        builder.row(_button(_("→ Estimate"), card.id, car_id, "est"))
    for estimate in await estimates.client_estimates(ctx.session, card.id, limit=3):
        builder.row(
            InlineKeyboardButton(
                text=fmt.cut(
                    _("Estimate №{number}, version {version}: {state}").format(
                        number=estimate.id,
                        version=estimate.version,
                        state=estimate_state_name(estimate.state),
                    ),
                    BUTTON_CHARS,
                ),
                callback_data=OpenEstimate(estimate_id=estimate.id).pack(),
            )
        )
    toggles = []
    for c in card.cars[:CAR_BUTTONS]:
        mark = "✓ " if c.id == car_id else ""
        label = fmt.cut(f"{mark}{_car_label(c)} ({counts.get(c.id, 0)})", 24)
        toggles.append(
            InlineKeyboardButton(
                text=label, callback_data=CartView(client_id=card.id, car_id=c.id).pack()
            )
        )
    if card.cars:
        mark = "✓ " if not car_id else ""
        toggles.append(
            InlineKeyboardButton(
                text=mark + _("No car ({count})").format(count=counts.get(None, 0)),
                callback_data=CartView(client_id=card.id).pack(),
            )
        )
    for i in range(0, len(toggles), 3):
        builder.row(*toggles[i : i + 3])
    builder.row(back_button())
    return Screen(fmt.paginate(lines[0], lines[1:])[0], builder.as_markup())


def estimate_state_name(state: EstimateState) -> str:
    return {
        EstimateState.DRAFT: _("draft"),
        EstimateState.SENT: _("waiting for the client"),
        EstimateState.DECIDED: _("decided"),
    }[EstimateState(state)]


def _button(text: str, client_id: int, car_id: int, action: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=text,
        callback_data=CartAction(client_id=client_id, car_id=car_id, action=action).pack(),
    )


def _to_cart(client_id: int, car_id: int) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=_("« Cart"), callback_data=CartView(client_id=client_id, car_id=car_id).pack()
    )


# --- presses ------------------------------------------------------------------------------


async def _show_screen(
    callback: CallbackQuery,
    cb: CallbackData,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    ctx = screen_context(session, staff, settings, search_service, state)
    try:
        screen = await render(cb, ctx)
    except (Forbidden, Stale) as exc:
        await refuse(callback, session, staff, reason=type(exc).__name__.lower(), detail=str(exc))
        return
    await show(callback, screen)


async def _refused(
    callback: CallbackQuery, session: AsyncSession, staff: Staff, refused: CartRefused
) -> None:
    await session.rollback()
    if refused.problem in STALE:
        reason = "forbidden" if refused.problem is CartProblem.FORBIDDEN else "stale"
        await refuse(callback, session, staff, reason=reason, detail=f"cart {refused}")
        return
    await callback.answer(problem_text(refused), show_alert=True)


async def on_action(
    callback: CallbackQuery,
    callback_data: CartAction,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    cb = callback_data
    car_id = cb.car_id or None
    view = CartView(client_id=cb.client_id, car_id=cb.car_id)
    deps = (session, staff, settings, search_service, state)
    try:
        if cb.action == "find":
            if not can(staff, Permission.CART):
                raise CartRefused(CartProblem.FORBIDDEN)
            await state.set_state(CartDialog.search)
            await state.update_data({DIALOG: {"client": cb.client_id, "car": cb.car_id}})
            await callback.answer()
            await show(
                callback,
                Screen(
                    _("Type a part of the name or the catalogue number."),
                    InlineKeyboardMarkup(inline_keyboard=[[_to_cart(cb.client_id, cb.car_id)]]),
                ),
            )
            return
        if cb.action == "plan":
            if car_id is None or not carts.may_pick_plan(staff):
                raise CartRefused(CartProblem.FORBIDDEN)
            screen = await plan_screen(session, cb.client_id, car_id)
            await callback.answer()
            await show(callback, screen)
            return
        if cb.action == "qty":
            if not carts.may_pick_plan(staff):
                raise CartRefused(CartProblem.FORBIDDEN)
            line = (await carts.view(session, cb.client_id, car_id)).lines
            found = next((p for p in line if p.id == cb.line_id), None)
            if found is None:
                raise CartRefused(CartProblem.LINE_NOT_FOUND)
            if not carts.may_edit(staff, found.kind, found.source):
                raise CartRefused(CartProblem.FORBIDDEN)
            await state.set_state(CartDialog.quantity)
            await state.update_data(
                {DIALOG: {"client": cb.client_id, "car": cb.car_id, "line": cb.line_id}}
            )
            await callback.answer()
            await show(
                callback,
                Screen(
                    _("The quantity of {item} (now {qty}), e.g. 2 or 1,5:").format(
                        item=q(found.item), qty=fmt.qty(found.qty_milli)
                    ),
                    InlineKeyboardMarkup(inline_keyboard=[[_to_cart(cb.client_id, cb.car_id)]]),
                ),
            )
            return
        if cb.action == "del":
            await carts.remove(session, staff=staff, line_id=cb.line_id)
            await session.commit()
            await callback.answer(_("Removed."))
            await _show_screen(callback, view, *deps)
            return
        if cb.action in ("order", "wo"):
            target = Target.CUSTOMER_ORDER if cb.action == "order" else Target.WORK_ORDER
            doc = await carts.to_document(
                session,
                staff=staff,
                client_id=cb.client_id,
                car_id=car_id,
                target=target,
                prefix=settings.document_prefix,
            )
            await session.commit()
            await callback.answer(_("{number} made.").format(number=doc.number))
            await _show_screen(callback, OpenDocument(document_id=doc.id), *deps)
            return
        if cb.action == "est":
            return await _to_estimate(callback, cb, *deps)
    except CartRefused as refused:
        await _refused(callback, session, staff, refused)
        return
    await refuse(callback, session, staff, reason="malformed", detail="cart action")


async def _to_estimate(
    callback: CallbackQuery,
    cb: CartAction,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    try:
        estimate = await estimates.from_cart(
            session, staff=staff, client_id=cb.client_id, car_id=cb.car_id or None
        )
        await session.commit()
    except estimates.EstimateRefused as refused:
        await session.rollback()
        if refused.problem is estimates.EstimateProblem.FORBIDDEN:
            await refuse(callback, session, staff, reason="forbidden", detail="estimate")
        else:
            await callback.answer(_("The cart is empty."), show_alert=True)
        return
    await callback.answer()
    deps = (session, staff, settings, search_service, state)
    await _show_screen(callback, OpenEstimate(estimate_id=estimate.id), *deps)


async def plan_screen(session: AsyncSession, client_id: int, car_id: int) -> Screen:
    rows = await carts.plan_lines(session, client_id, car_id)
    text = ["📋 <b>" + _("The car's repair plan") + "</b>", ""]
    builder = InlineKeyboardBuilder()
    for no, p in enumerate(rows, start=1):
        mark = "✓ " if p.in_cart else ""
        text.append(f"{mark}{no}. {q(p.item)} · {q(p.document_number)} · {fmt.qty(p.qty_milli)}")
        if not p.in_cart:
            builder.row(
                InlineKeyboardButton(
                    text=fmt.cut(f"+ {no}. {p.item}", BUTTON_CHARS),
                    callback_data=PlanPick(
                        client_id=client_id, car_id=car_id, line_id=p.id
                    ).pack(),
                )
            )
    if not rows:
        text.append(_("Nothing is planned for this car."))
    builder.row(_to_cart(client_id, car_id))
    return Screen(fmt.paginate(text[0], text[1:])[0], builder.as_markup())


async def on_price_pick(
    callback: CallbackQuery,
    callback_data: PricePick,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    cb = callback_data
    try:
        line = await carts.add_from_price_list(
            session,
            staff=staff,
            client_id=cb.client_id,
            car_id=cb.car_id or None,
            item_id=cb.item_id,
        )
        await session.commit()
    except CartRefused as refused:
        await _refused(callback, session, staff, refused)
        return
    await callback.answer(_("Added: {item}").format(item=fmt.cut(line.item, 100)))
    view = CartView(client_id=cb.client_id, car_id=cb.car_id)
    await _show_screen(callback, view, session, staff, settings, search_service, state)


async def on_plan_pick(
    callback: CallbackQuery,
    callback_data: PlanPick,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    cb = callback_data
    try:
        line = await carts.add_from_plan(
            session, staff=staff, client_id=cb.client_id, car_id=cb.car_id, plan_line_id=cb.line_id
        )
        await session.commit()
    except CartRefused as refused:
        await _refused(callback, session, staff, refused)
        return
    await callback.answer(_("Added: {item}").format(item=fmt.cut(line.item, 100)))
    await show(callback, await plan_screen(session, cb.client_id, cb.car_id))


# --- typed input ----------------------------------------------------------------------------


async def _dialog(state: FSMContext) -> dict[str, int]:
    data = await state.get_data()
    await state.set_state(None)
    await state.update_data({DIALOG: None})
    return dict(data.get(DIALOG) or {})


async def on_search_text(
    message: Message, session: AsyncSession, staff: Staff, state: FSMContext
) -> None:
    dialog = await _dialog(state)
    if not dialog or not can(staff, Permission.CART):
        return
    client_id, car_id = dialog["client"], dialog["car"]
    items = await pricelist.search(session, message.text or "")
    terms = await carts.client_terms(session, client_id)
    prices = await pricelist.prices(session, (i.id for i in items), terms.price_type_id)
    builder = InlineKeyboardBuilder()
    for item in items:
        price = prices.get(item.id)
        label = item.name + (f" · {item.catalogue_number}" if item.catalogue_number else "")
        label += f" · {fmt.money(price)}" if price is not None else ""
        if item.kind is LineKind.WORK:
            label = "🔧 " + label
        builder.row(
            InlineKeyboardButton(
                text=fmt.cut(label, BUTTON_CHARS),
                callback_data=PricePick(
                    client_id=client_id, car_id=car_id, item_id=item.id
                ).pack(),
            )
        )
    builder.row(
        _button(_("🔎 Search again"), client_id, car_id, "find"), _to_cart(client_id, car_id)
    )
    text = (
        _("Found in the price list: {query}. Tap to add one to the cart.")
        if items
        else _("Nothing in the price list matches {query}.")
    ).format(query=f"<b>{q(message.text)}</b>")
    await message.answer(text, reply_markup=builder.as_markup())


def parse_quantity(text: str) -> int | None:
    """ "2", "1,5", "0.25" -> thousandths; None when it is not a quantity."""
    cleaned = "".join(text.split()).replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite() or value != value.quantize(Decimal("0.001")):
        return None
    return int(value * 1000)


async def on_quantity(
    message: Message,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    data = await state.get_data()
    dialog = dict(data.get(DIALOG) or {})
    qty = parse_quantity(message.text or "")
    if qty is None or qty <= 0:
        await message.answer(_("That is not a quantity. Type it like 2 or 1,5."))
        return
    await _dialog(state)
    if not dialog:
        return
    try:
        await carts.set_quantity(session, staff=staff, line_id=dialog["line"], qty_milli=qty)
        await session.commit()
    except CartRefused as refused:
        await session.rollback()
        await message.answer(
            problem_text(refused)
            if refused.problem not in STALE
            else _("This line is gone from the cart.")
        )
        return
    ctx = screen_context(session, staff, settings, search_service, state)
    try:
        screen = await render(CartView(client_id=dialog["client"], car_id=dialog["car"]), ctx)
    except (Forbidden, Stale):
        return
    await message.answer(screen.text, reply_markup=screen.markup)


__all__ = ["cart_screen", "cart_tab", "line_text", "make_router"]
