"""The screens of the staff workstation: each typed button renders one screen.

A screen is built from the database every time (a press re-reads the object), after the
staff member's role is checked for it. ``Stale`` means the object or the context is gone
("this button is out of date"); ``Forbidden`` that the role may not see it. Neither ever
reaches Telegram as an error: ``handlers.navigation`` answers and audits them.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder as _AiogramKeyboardBuilder
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import fmt
from handlers.callbacks import (
    ArrivalStart,
    Back,
    BookingDays,
    BookingList,
    CarSelections,
    CartView,
    ClientInvite,
    ClientTab,
    ContactMenu,
    DocumentsFilter,
    DocumentState,
    FilterList,
    FilterToggle,
    NewDocument,
    OpenCar,
    OpenClient,
    OpenDocument,
    OpenEstimate,
    OrderDocument,
    OrdersView,
    PayStart,
    SearchPage,
    SendInvoice,
    TireList,
    WorkOrderState,
)
from handlers.fmt import q
from services import cards, documents, ledger
from services.access import Permission, can
from services.events import list_events
from services.filters import ClientFilter, FilterContext
from services.oem import oem_link
from services.search import Box, CarHit, ClientHit, SearchResult, SearchService, list_clients
from services.selections import SelectionSource, car_selections
from storage.models import (
    Client,
    Department,
    DocState,
    DocType,
    Document,
    EventKind,
    Organization,
    PaymentMethod,
    Staff,
)

PAGE = 10
BUTTON_CHARS = 60
# An event's text in the list (ten to a page, well inside Telegram's 4096).
EVENT_CHARS = 300


class InlineKeyboardBuilder(_AiogramKeyboardBuilder):
    """aiogram's builder without the deep copy of every button on export: a screen builds
    its keyboard once and never touches the builder again, and copying a card's twenty
    buttons (pydantic models) took a millisecond or more per press."""

    def export(self) -> list[list[InlineKeyboardButton]]:
        return [list(row) for row in self._markup]


class Stale(Exception):
    """The object or the screen's context is gone: the button is out of date."""


class Forbidden(Exception):
    """The staff member's role may not see this."""


@dataclass(slots=True)
class Screen:
    text: str
    markup: InlineKeyboardMarkup | None = None


def keyboard(*rows: Iterable[tuple[str, CallbackData]]) -> InlineKeyboardMarkup:
    """Rows of (label, callback data) buttons; an empty row is left out."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=text, callback_data=cb.pack()) for text, cb in row]
            for row in rows
            if row
        ]
    )


@dataclass(slots=True)
class ScreenContext:
    session: AsyncSession
    staff: Staff
    settings: Settings
    search_service: SearchService
    state: FSMContext

    def require(self, permission: Permission) -> None:
        if not can(self.staff, permission):
            raise Forbidden(permission.value)

    def filter_context(self) -> FilterContext:
        return FilterContext.for_day(self.staff.id, self.settings.tz)


# --- labels -------------------------------------------------------------------------


def doc_type_name(doc_type: DocType) -> str:
    return {
        DocType.CUSTOMER_ORDER: _("Customer order"),
        DocType.WORK_ORDER: _("Work order"),
        DocType.REPAIR_REQUEST: _("Repair request"),
        DocType.REPAIR_PLAN: _("Repair plan"),
        DocType.INVOICE: _("Invoice"),
        DocType.SALE: _("Sale"),
        DocType.PAYMENT: _("Payment"),
    }[DocType(doc_type)]


def selection_source_name(source: str) -> str:
    """Where a pick came from, in the reader's language (an unknown one as stored)."""
    names = {
        SelectionSource.PRICE_LIST: _("price list"),
        SelectionSource.OEM: _("OEM catalogue"),
        SelectionSource.REPAIR_PLAN: _("repair plan"),
        SelectionSource.CART: _("cart"),
    }
    try:
        return names[SelectionSource(source)]
    except ValueError:
        return source


def state_name(doc_type: DocType, state: DocState) -> str:
    if DocType(doc_type) is DocType.WORK_ORDER and DocState(state) is DocState.REQUEST:
        return _("request")
    return {
        DocState.OPEN: _("open"),
        DocState.REQUEST: _("request"),
        DocState.IN_PROGRESS: _("in progress"),
        DocState.COMPLETED: _("completed, awaiting pickup"),
        DocState.CLOSED: _("closed"),
        DocState.POSTED: _("posted"),
        DocState.CANCELLED: _("cancelled"),
    }[DocState(state)]


def filter_name(flt: ClientFilter) -> str:
    return {
        ClientFilter.MINE: _("Only mine"),
        ClientFilter.NEW_EVENTS: _("With new events"),
        ClientFilter.OPEN_ORDERS: _("With open orders"),
        ClientFilter.RESERVED: _("With goods reserved"),
        ClientFilter.BOOKED_TODAY: _("Booked for today"),
        ClientFilter.ON_SERVICE: _("On service"),
        ClientFilter.AWAITING_PICKUP: _("Awaiting pickup"),
    }[flt]


def event_kind_name(kind: EventKind) -> str:
    return {
        EventKind.CALL: _("Call"),
        EventKind.SMS: _("SMS"),
        EventKind.EMAIL: _("E-mail"),
        EventKind.TELEGRAM: _("Telegram"),
        EventKind.VISIT: _("Visit"),
        EventKind.NOTE: _("Note"),
    }[EventKind(kind)]


def contact_kind_name(kind: str) -> str:
    return {
        "mobile": _("Mobile phone"),
        "phone": _("Phone"),
        "email": _("E-mail"),
        "address": _("Address"),
        "other": _("Other"),
    }.get(str(kind), str(kind))


def _cut(text: str, limit: int = BUTTON_CHARS) -> str:
    return fmt.cut(text, limit)


def client_button(hit: ClientHit) -> InlineKeyboardButton:
    label = hit.name + (f" · {fmt.format_phone(hit.main_phone)}" if hit.main_phone else "")
    return InlineKeyboardButton(
        text=_cut("👤 " + label), callback_data=OpenClient(client_id=hit.id).pack()
    )


def car_button(hit: CarHit | cards.ClientCarInfo) -> InlineKeyboardButton:
    code = hit.plate or hit.vin or hit.body_number or ""
    label = f"{code} · {hit.name}" if code else hit.name
    return InlineKeyboardButton(
        text=_cut("🚗 " + label), callback_data=OpenCar(car_id=hit.id).pack()
    )


def pager(
    make: Callable[[int], CallbackData], page: int, pages: int
) -> list[InlineKeyboardButton]:
    if pages <= 1:
        return []
    row = []
    if page > 0:
        row.append(InlineKeyboardButton(text="◀", callback_data=make(page - 1).pack()))
    row.append(InlineKeyboardButton(text=f"{page + 1}/{pages}", callback_data=make(page).pack()))
    if page + 1 < pages:
        row.append(InlineKeyboardButton(text="▶", callback_data=make(page + 1).pack()))
    return row


def back_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(text=_("« Back"), callback_data=Back().pack())


def _pages(total: int, size: int = PAGE) -> int:
    return max(1, math.ceil(total / size))


def _page_in_range(page: int, total: int, size: int = PAGE) -> int:
    if page < 0 or page >= _pages(total, size):
        raise Stale("page")
    return page


# --- search ---------------------------------------------------------------------------


async def search_screen(cb: SearchPage, ctx: ScreenContext) -> Screen:
    ctx.require(Permission.SEARCH)
    data = await ctx.state.get_data()
    search = data.get("search")
    if not search:
        raise Stale("search context")
    filters = frozenset(ClientFilter(f) for f in data.get("filters", []))
    result = await ctx.search_service.search(
        ctx.session,
        search["q"],
        box=Box(search["box"]),
        filters=filters,
        ctx=ctx.filter_context(),
        offset=max(cb.page, 0) * PAGE,
        limit=PAGE,
        joined=True,
    )
    return search_results(result, filters, cb.page)


def search_results(result: SearchResult, filters: frozenset[ClientFilter], page: int) -> Screen:
    """A page of a search: ``result`` holds that page of the clients followed by the cars
    (``SearchService.search(..., joined=True)``) and the totals."""
    total = result.clients_total + result.cars_total
    page = _page_in_range(page, total)
    hits: list[InlineKeyboardButton] = [client_button(c) for c in result.clients]
    hits += [car_button(c) for c in result.cars]
    more = "+" if result.more else ""
    lines = [
        "🔎 " + _("Search: {query}").format(query=f"<b>{q(result.query)}</b>"),
        _("Clients: {clients} · Cars: {cars}").format(
            clients=f"{result.clients_total}{more}", cars=f"{result.cars_total}{more}"
        ),
    ]
    if filters:
        lines.append(
            _("Filters: {names}").format(names=", ".join(filter_name(f) for f in sorted(filters)))
        )
    if result.more:
        lines.append(_("Showing the best matches; type more of the name or number to narrow."))
    if not total:
        lines += ["", nothing_found_hint()]
    builder = InlineKeyboardBuilder()
    for button in hits[:PAGE]:
        builder.row(button)
    builder.row(*pager(lambda p: SearchPage(page=p), page, _pages(total)))
    return Screen("\n".join(lines), builder.as_markup())


def nothing_found_hint() -> str:
    return _(
        "Nothing found. Try part of the plate (in any alphabet), the last 4 or more digits "
        "of the phone, the end of the VIN, or part of the name."
    )


# --- filters ----------------------------------------------------------------------------


async def filters_screen(cb: FilterToggle, ctx: ScreenContext) -> Screen:
    ctx.require(Permission.SEARCH)
    data = await ctx.state.get_data()
    chosen = {ClientFilter(f) for f in data.get("filters", [])}
    if cb.flt == "clear":
        chosen.clear()
    elif cb.flt:
        try:
            flt = ClientFilter(cb.flt)
        except ValueError:
            raise Stale("filter") from None
        chosen ^= {flt}
    await ctx.state.update_data(filters=sorted(f.value for f in chosen))
    builder = InlineKeyboardBuilder()
    for flt in ClientFilter:
        mark = "✓ " if flt in chosen else "   "
        builder.row(
            InlineKeyboardButton(
                text=mark + filter_name(flt), callback_data=FilterToggle(flt=flt.value).pack()
            )
        )
    builder.row(
        InlineKeyboardButton(text=_("Show the list"), callback_data=FilterList(page=0).pack()),
        InlineKeyboardButton(text=_("Clear"), callback_data=FilterToggle(flt="clear").pack()),
    )
    text = _(
        "Filters: tap to switch on or off, then show the list. "
        "They also narrow what you search for."
    )
    return Screen(text, builder.as_markup())


async def filter_list_screen(cb: FilterList, ctx: ScreenContext) -> Screen:
    ctx.require(Permission.SEARCH)
    data = await ctx.state.get_data()
    filters = frozenset(ClientFilter(f) for f in data.get("filters", []))
    hits, total = await list_clients(
        ctx.session, filters, ctx.filter_context(), offset=max(cb.page, 0) * PAGE, limit=PAGE
    )
    page = _page_in_range(cb.page, total)
    names = ", ".join(filter_name(f) for f in sorted(filters)) or _("none")
    lines = [_("Clients: {count}").format(count=total), _("Filters: {names}").format(names=names)]
    if not hits:
        lines.append(_("No client matches these filters."))
    builder = InlineKeyboardBuilder()
    for hit in hits:
        builder.row(client_button(hit))
    builder.row(*pager(lambda p: FilterList(page=p), page, _pages(total)))
    builder.row(
        InlineKeyboardButton(
            text=_("Change the filters"), callback_data=FilterToggle(flt="").pack()
        )
    )
    return Screen("\n".join(lines), builder.as_markup())


# --- the client card ----------------------------------------------------------------


async def client_screen(cb: OpenClient, ctx: ScreenContext) -> Screen:
    ctx.require(Permission.SEARCH)
    card = await cards.client_card(ctx.session, cb.client_id)
    if card is None:
        raise Stale("client")
    if cb.tab is ClientTab.EVENTS:
        ctx.require(Permission.EVENTS)
        return await _events_tab(card, cb, ctx)
    if cb.tab is ClientTab.CARS:
        return _cars_tab(card)
    if cb.tab is ClientTab.CART:
        from handlers.cart import cart_tab  # handlers.cart builds on this module

        return await cart_tab(card, ctx)
    if cb.tab is not ClientTab.INFO:
        raise Stale("tab")
    pages = fmt.paginate("\n".join(client_header(card)), client_info_blocks(card, ctx))
    if not 0 <= cb.page < len(pages):
        raise Stale("page")
    markup = client_tabs(card, ctx.staff)
    turn = pager(lambda p: OpenClient(client_id=card.id, page=p), cb.page, len(pages))
    if turn:
        markup.inline_keyboard.insert(0, turn)
    return Screen(pages[cb.page], markup)


def client_header(card: cards.ClientCard) -> list[str]:
    kind = _("company") if str(card.kind) == "company" else _("person")
    relation = {"buyer": _("buyer"), "supplier": _("supplier")}.get(str(card.relation), _("other"))
    header = [
        f"<b>{q(card.name)}</b>",
        f"{relation} · {kind}"
        + (" · " + _("INN {inn}").format(inn=q(card.inn)) if card.inn else ""),
    ]
    if card.main_phone:
        header.append("📞 " + fmt.phone(card.main_phone))
    return header


def client_info_blocks(card: cards.ClientCard, ctx: ScreenContext) -> list[str]:
    """The Information tab under the header, as whole records (a long card is paged)."""
    tz = ctx.settings.tz
    lines: list[str] = []
    if card.contacts:
        lines += ["", "<b>" + _("Contacts") + "</b>"]
        for c in card.contacts:
            value = fmt.phone(c.value) if str(c.kind) in ("mobile", "phone") else q(c.value)
            comment = f" ({q(c.comment)})" if c.comment else ""
            lines.append(f"• {contact_kind_name(c.kind)}: {value}{comment}")
    lines += [
        "",
        _("Last contact: {when}").format(when=fmt.when(card.last_contact_at, tz)),
    ]
    if can(ctx.staff, Permission.ORDERS) or can(ctx.staff, Permission.DOCUMENTS):
        lines += [
            _("Debt: {amount}").format(amount=fmt.money(card.debt)),
            _("Debt on open work orders: {amount}").format(
                amount=fmt.money(card.open_work_orders_debt)
            ),
        ]
    lines.append(_("Price type: {name}").format(name=q(card.price_type)))
    discount = ", ".join(
        f"{q(d.number)} ({fmt.percent(d.discount_bp)})" for d in card.discount_cards
    )
    lines.append(_("Discount cards: {cards}").format(cards=discount or "—"))
    lines.append(_("Masters: {names}").format(names=", ".join(q(m) for m in card.masters) or "—"))
    lines.append(_("Manager: {name}").format(name=q(card.manager)))
    if card.cars:
        lines += ["", "<b>" + _("Cars") + "</b>"]
        for car in card.cars:
            code = car.plate or car.vin or car.body_number
            lines.append(f"• {q(car.name)} — {q(code)}")
    return lines


def client_tabs(card: cards.ClientCard, staff: Staff) -> InlineKeyboardMarkup:
    cid = card.id
    builder = InlineKeyboardBuilder()
    row = []
    if can(staff, Permission.EVENTS):
        row.append(
            InlineKeyboardButton(
                text=_("Events ({new} new)").format(new=card.counts.new_events),
                callback_data=OpenClient(client_id=cid, tab=ClientTab.EVENTS).pack(),
            )
        )
    if can(staff, Permission.ORDERS):
        row.append(
            InlineKeyboardButton(
                text=_("Orders ({count})").format(count=card.counts.open_orders),
                callback_data=OrdersView(client_id=cid).pack(),
            )
        )
    if can(staff, Permission.CART_VIEW):
        row.append(
            InlineKeyboardButton(
                text=_("Cart ({count})").format(count=card.counts.cart),
                callback_data=OpenClient(client_id=cid, tab=ClientTab.CART).pack(),
            )
        )
    if row:
        builder.row(*row)
    if can(staff, Permission.DOCUMENTS):
        builder.row(
            InlineKeyboardButton(
                text=_("Documents ({count})").format(count=card.counts.documents),
                callback_data=DocumentsFilter(client_id=cid).pack(),
            )
        )
    contact_row = []
    if can(staff, Permission.EVENTS):
        contact_row += [
            InlineKeyboardButton(
                text="📞", callback_data=ContactMenu(client_id=cid, action="call").pack()
            ),
            InlineKeyboardButton(
                text="SMS", callback_data=ContactMenu(client_id=cid, action="sms").pack()
            ),
            InlineKeyboardButton(
                text="📧", callback_data=ContactMenu(client_id=cid, action="email").pack()
            ),
            InlineKeyboardButton(
                text="💬", callback_data=ContactMenu(client_id=cid, action="tg").pack()
            ),
            InlineKeyboardButton(
                text=_("Register contact"),
                callback_data=ContactMenu(client_id=cid, action="log").pack(),
            ),
        ]
    if contact_row:
        builder.row(*contact_row)
    if can(staff, Permission.DOCUMENTS):
        builder.row(
            InlineKeyboardButton(
                text=_("New order"),
                callback_data=NewDocument(client_id=cid, kind="order").pack(),
            ),
            InlineKeyboardButton(
                text=_("New repair request"),
                callback_data=NewDocument(client_id=cid, kind="request").pack(),
            ),
        )
    if can(staff, Permission.EDIT_CLIENT):
        builder.row(
            InlineKeyboardButton(
                text=_("Edit contacts"),
                callback_data=ContactMenu(client_id=cid, action="edit").pack(),
            )
        )
    builder.row(*related_buttons(cid, staff))  # related workstations (handlers/booking.py)
    if can(staff, Permission.LINK_CLIENTS):
        builder.row(
            InlineKeyboardButton(
                text=_("Invite to the bot"), callback_data=ClientInvite(client_id=cid).pack()
            )
        )
    for car in card.cars[:8]:
        builder.row(car_button(car))
    if len(card.cars) > 8:
        builder.row(
            InlineKeyboardButton(
                text=_("All cars ({count})").format(count=len(card.cars)),
                callback_data=OpenClient(client_id=cid, tab=ClientTab.CARS).pack(),
            )
        )
    builder.row(back_button())
    return builder.as_markup()


def related_buttons(client_id: int, staff: Staff) -> list[InlineKeyboardButton]:
    """The client card's way to the related workstations: bookings, tire hotel."""
    buttons = []
    if can(staff, Permission.BOOKINGS):
        buttons.append(
            InlineKeyboardButton(
                text=_("📅 Bookings"), callback_data=BookingList(client_id=client_id).pack()
            )
        )
    if can(staff, Permission.TIRE_HOTEL):
        buttons.append(
            InlineKeyboardButton(
                text=_("🛞 Tire hotel"), callback_data=TireList(client_id=client_id).pack()
            )
        )
    return buttons


def car_related_buttons(card: cards.CarCard, staff: Staff) -> list[InlineKeyboardButton]:
    """The car card's: book it (for its first client), check it in."""
    buttons = []
    if can(staff, Permission.BOOKINGS) and card.clients:
        buttons.append(
            InlineKeyboardButton(
                text=_("📅 Book"),
                callback_data=BookingDays(client_id=card.clients[0].id, car_id=card.id).pack(),
            )
        )
    if can(staff, Permission.ARRIVAL) and card.clients:
        buttons.append(
            InlineKeyboardButton(
                text=_("🔧 Arrival"), callback_data=ArrivalStart(car_id=card.id).pack()
            )
        )
    return buttons


async def _events_tab(card: cards.ClientCard, cb: OpenClient, ctx: ScreenContext) -> Screen:
    rows, total = await list_events(
        ctx.session, card.id, offset=max(cb.page, 0) * PAGE, limit=PAGE
    )
    page = _page_in_range(cb.page, total)
    tz = ctx.settings.tz
    blocks = []
    for e in rows:
        mark = "🆕 " if e.is_new else ""
        direction = "→" if str(e.direction) == "out" else "←"
        head = f"{mark}{fmt.when(e.created_at, tz)} · {event_kind_name(e.kind)} {direction}"
        if e.author:
            head += f" · {q(e.author)}"
        body = f"\n{q(fmt.cut(e.text, EVENT_CHARS))}" if e.text else ""
        blocks.append(head + body)
    header = "\n".join([*client_header(card), "", "<b>" + _("Events") + "</b>"])
    if not blocks:
        blocks.append(_("No events yet."))
    text = fmt.paginate(header, blocks)[0]
    builder = InlineKeyboardBuilder()
    # handlers.contact builds on this module, hence the import here
    from handlers.contact import event_buttons

    for buttons in event_buttons(rows, card.id, page=page, tz=tz):
        builder.row(*buttons)
    builder.row(
        *pager(
            lambda p: OpenClient(client_id=card.id, tab=ClientTab.EVENTS, page=p),
            page,
            _pages(total),
        )
    )
    builder.row(back_button())
    return Screen(text, builder.as_markup())


def _cars_tab(card: cards.ClientCard) -> Screen:
    builder = InlineKeyboardBuilder()
    for car in card.cars:
        builder.row(car_button(car))
    builder.row(back_button())
    text = "\n".join([*client_header(card), "", _("Cars: {count}").format(count=len(card.cars))])
    return Screen(text, builder.as_markup())


# --- orders and documents ------------------------------------------------------------


async def orders_screen(cb: OrdersView, ctx: ScreenContext) -> Screen:
    ctx.require(Permission.ORDERS)
    card = await cards.client_card(ctx.session, cb.client_id)
    if card is None:
        raise Stale("client")
    car_ids = {c.id for c in card.cars}
    if cb.car_id and cb.car_id not in car_ids:
        raise Stale("car")
    balances = await ledger.order_balances(
        ctx.session, card.id, car_id=cb.car_id or None, open_only=True
    )
    page = _page_in_range(cb.page, len(balances))
    tz = ctx.settings.tz
    blocks = []
    for b in balances[page * PAGE : (page + 1) * PAGE]:
        d = b.document
        blocks.append(
            f"<b>{q(d.number)}</b> · {fmt.day(d.date, tz)} · {state_name(d.doc_type, d.state)}\n"
            + _("total {total} · paid {paid} · debt {debt}").format(
                total=fmt.money(b.total), paid=fmt.money(b.paid), debt=fmt.money(b.debt)
            )
        )
    title = _("Open orders: {count}").format(count=len(balances))
    if cb.car_id:
        car = next(c for c in card.cars if c.id == cb.car_id)
        title += " · " + q(car.plate or car.name)
    header = "\n".join([*client_header(card), "", "<b>" + title + "</b>"])
    if not blocks:
        blocks.append(_("No open orders."))
    builder = InlineKeyboardBuilder()
    for b in balances[page * PAGE : (page + 1) * PAGE]:
        builder.row(
            InlineKeyboardButton(
                text=_cut(f"📄 {b.document.number} · {fmt.money(b.debt)}"),
                callback_data=OpenDocument(document_id=b.document.id).pack(),
            )
        )
    builder.row(
        *pager(
            lambda p: OrdersView(client_id=card.id, car_id=cb.car_id, page=p),
            page,
            _pages(len(balances)),
        )
    )
    if card.cars:
        toggles = [
            InlineKeyboardButton(
                text=("✓ " if not cb.car_id else "") + _("All cars"),
                callback_data=OrdersView(client_id=card.id).pack(),
            )
        ]
        for car in card.cars[:4]:
            toggles.append(
                InlineKeyboardButton(
                    text=("✓ " if cb.car_id == car.id else "") + _cut(car.plate or car.name, 20),
                    callback_data=OrdersView(client_id=card.id, car_id=car.id).pack(),
                )
            )
        builder.row(*toggles)
    builder.row(back_button())
    return Screen(fmt.paginate(header, blocks)[0], builder.as_markup())


DOC_FILTERS = (
    DocType.CUSTOMER_ORDER,
    DocType.INVOICE,
    DocType.SALE,
    DocType.WORK_ORDER,
    DocType.REPAIR_REQUEST,
    DocType.PAYMENT,
)


async def documents_screen(cb: DocumentsFilter, ctx: ScreenContext) -> Screen:
    ctx.require(Permission.DOCUMENTS)
    card = await cards.client_card(ctx.session, cb.client_id)
    if card is None:
        raise Stale("client")
    doc_types = None
    if cb.doc_type:
        try:
            doc_types = {DocType(cb.doc_type)}
        except ValueError:
            raise Stale("document type") from None
    rows, total = await cards.client_documents(
        ctx.session,
        card.id,
        doc_types=doc_types,
        organization_id=cb.organization_id or None,
        department_id=cb.department_id or None,
        offset=max(cb.page, 0) * PAGE,
        limit=PAGE,
    )
    page = _page_in_range(cb.page, total)
    tz = ctx.settings.tz
    title = _("Documents: {count}").format(count=total)
    lines = [*client_header(card), "", "<b>" + title + "</b>"]
    if not rows:
        lines.append(_("No documents."))

    def same(**changes: Any) -> DocumentsFilter:
        base = DocumentsFilter(
            client_id=card.id,
            doc_type=cb.doc_type,
            organization_id=cb.organization_id,
            department_id=cb.department_id,
            page=0,
        )
        return base.model_copy(update=changes)

    builder = InlineKeyboardBuilder()
    for d in rows:
        builder.row(
            InlineKeyboardButton(
                text=_cut(
                    f"{doc_type_name(d.doc_type)} {d.number} · {fmt.day(d.date, tz)} · "
                    f"{fmt.money(d.amount)}"
                ),
                callback_data=OpenDocument(document_id=d.id).pack(),
            )
        )
    builder.row(*pager(lambda p: same(page=p), page, _pages(total)))
    type_buttons = [
        InlineKeyboardButton(
            text=("✓ " if not cb.doc_type else "") + _("All"),
            callback_data=same(doc_type="").pack(),
        )
    ]
    for doc_type in DOC_FILTERS:
        mark = "✓ " if cb.doc_type == doc_type.value else ""
        type_buttons.append(
            InlineKeyboardButton(
                text=mark + doc_type_name(doc_type),
                callback_data=same(doc_type=doc_type.value).pack(),
            )
        )
    for i in range(0, len(type_buttons), 3):
        builder.row(*type_buttons[i : i + 3])
    organizations = await _client_places(ctx.session, card.id, Organization)
    if len(organizations) > 1:
        _choice_rows(
            builder,
            cb.organization_id,
            organizations,
            _("Every organization"),
            lambda oid: same(organization_id=oid, department_id=0),
        )
    departments = await _client_places(
        ctx.session, card.id, Department, organization_id=cb.organization_id or None
    )
    if len(departments) > 1:
        _choice_rows(
            builder,
            cb.department_id,
            departments,
            _("Every department"),
            lambda did: same(department_id=did),
        )
    builder.row(back_button())
    return Screen("\n".join(lines), builder.as_markup())


def _choice_rows(
    builder: InlineKeyboardBuilder,
    current: int,
    options: list[tuple[int, str]],
    every: str,
    make: Callable[[int], CallbackData],
) -> None:
    """ "Every …" and up to five options, the current one ticked, two to a row."""
    buttons = [
        InlineKeyboardButton(
            text=("✓ " if not current else "") + every, callback_data=make(0).pack()
        )
    ]
    for option_id, name in options[:5]:
        mark = "✓ " if current == option_id else ""
        buttons.append(
            InlineKeyboardButton(text=mark + _cut(name, 24), callback_data=make(option_id).pack())
        )
    for i in range(0, len(buttons), 2):
        builder.row(*buttons[i : i + 2])


async def _client_places(
    session: AsyncSession,
    client_id: int,
    model: type[Organization] | type[Department],
    *,
    organization_id: int | None = None,
) -> list[tuple[int, str]]:
    """The organizations (or departments) the client's documents belong to."""
    column = Document.organization_id if model is Organization else Document.department_id
    used = select(column).where(Document.client_id == client_id)
    if organization_id is not None:
        used = used.where(Document.organization_id == organization_id)
    rows = await session.execute(
        select(model.id, model.name).where(model.id.in_(used.distinct())).order_by(model.name)
    )
    return [(r[0], r[1]) for r in rows]


MONEY_DOCS = frozenset({DocType.CUSTOMER_ORDER, DocType.INVOICE, DocType.SALE, DocType.PAYMENT})
CAR_DOCS = frozenset(
    {
        DocType.WORK_ORDER,
        DocType.REPAIR_PLAN,
        DocType.REPAIR_REQUEST,
        DocType.CUSTOMER_ORDER,
        DocType.SALE,
    }
)


def may_open_document(staff: Staff, doc_type: DocType, has_car: bool) -> bool:
    """Managers see every document; cashiers the money documents; masters the documents
    of a car (its works and goods)."""
    if can(staff, Permission.DOCUMENTS):
        return True
    if doc_type in MONEY_DOCS and can(staff, Permission.ORDERS):
        return True
    return has_car and doc_type in CAR_DOCS and can(staff, Permission.CAR_HISTORY)


def order_buttons(
    staff: Staff, balance: ledger.OrderBalance, *, client_linked: bool, settings: Settings
) -> list[list[InlineKeyboardButton]]:
    """What may be done with an order from its screen, by role."""
    d = balance.document
    rows: list[list[InlineKeyboardButton]] = []
    payable = d.doc_type in (DocType.CUSTOMER_ORDER, DocType.WORK_ORDER) and balance.debt > 0
    if payable and can(staff, Permission.PAYMENTS):
        rows.append(
            [
                InlineKeyboardButton(
                    text=_("Pay"),
                    callback_data=PayStart(
                        order_id=d.id, method=PaymentMethod.CASH_DESK.value
                    ).pack(),
                ),
                InlineKeyboardButton(
                    text=_("Cash receipt order"),
                    callback_data=PayStart(
                        order_id=d.id, method=PaymentMethod.CASH_RECEIPT.value
                    ).pack(),
                ),
            ]
        )
        if client_linked and settings.payments_provider_token is not None:
            rows.append(
                [
                    InlineKeyboardButton(
                        text=_("Send a Telegram invoice"),
                        callback_data=SendInvoice(order_id=d.id).pack(),
                    )
                ]
            )
    if (
        d.doc_type is DocType.CUSTOMER_ORDER
        and d.state is DocState.OPEN
        and can(staff, Permission.DOCUMENTS)
    ):
        rows.append(
            [
                InlineKeyboardButton(
                    text=_("Invoice"),
                    callback_data=OrderDocument(order_id=d.id, kind="invoice").pack(),
                ),
                InlineKeyboardButton(
                    text=_("Sale of the goods ready"),
                    callback_data=OrderDocument(order_id=d.id, kind="sale").pack(),
                ),
            ]
        )
    return rows


def work_order_buttons(document_id: int, state: DocState) -> list[InlineKeyboardButton]:
    """The next steps of a work order (cancelling is not offered here)."""
    labels = {
        DocState.IN_PROGRESS: _("Take into work")
        if state is DocState.REQUEST
        else _("Back to work"),
        DocState.COMPLETED: _("Done: the car is ready"),
        DocState.CLOSED: _("The car is issued"),
    }
    return [
        InlineKeyboardButton(
            text=label,
            callback_data=WorkOrderState(document_id=document_id, state=target.value).pack(),
        )
        for target, label in labels.items()
        if documents.can_transition(DocType.WORK_ORDER, state, target)
    ]


# Customer orders and repair requests: the office closes, reopens or cancels them.
OFFICE_MOVES = {
    DocType.CUSTOMER_ORDER: (DocState.CLOSED, DocState.OPEN, DocState.CANCELLED),
    DocType.REPAIR_REQUEST: (DocState.CLOSED, DocState.CANCELLED),
}


def office_state_buttons(
    document_id: int, doc_type: DocType, state: DocState
) -> list[InlineKeyboardButton]:
    labels = {
        DocState.CLOSED: _("✔ Close"),
        DocState.OPEN: _("↩ Reopen"),
        DocState.CANCELLED: _("✖ Cancel"),
    }
    return [
        InlineKeyboardButton(
            text=labels[target],
            callback_data=DocumentState(document_id=document_id, state=target.value).pack(),
        )
        for target in OFFICE_MOVES.get(doc_type, ())
        if documents.can_transition(doc_type, state, target)
    ]


async def document_screen(cb: OpenDocument, ctx: ScreenContext) -> Screen:
    ctx.require(Permission.SEARCH)
    view = await cards.document_lines(ctx.session, cb.document_id)
    if view is None:
        raise Stale("document")
    d = view.document
    if not may_open_document(ctx.staff, DocType(d.doc_type), d.car_id is not None):
        raise Forbidden("document")
    tz = ctx.settings.tz
    header_lines = [
        f"<b>{doc_type_name(d.doc_type)} {q(d.number)}</b>",
        _("Date: {when}").format(when=fmt.when(d.date, tz)),
        _("State: {state}").format(state=state_name(d.doc_type, d.state)),
        _("Amount: {amount}").format(amount=fmt.money(d.amount)),
    ]
    if d.repair_type:
        header_lines.append(_("Repair type: {name}").format(name=q(d.repair_type)))
    blocks: list[str] = []
    if view.works:
        blocks.append("\n<b>" + _("Works") + "</b>")
        for w in view.works:
            norm = (
                _("{hours} h × {rate}").format(
                    hours=fmt.qty(w.norm_hours_milli), rate=fmt.money(w.price_per_hour or 0)
                )
                if w.norm_hours_milli is not None
                else fmt.money(w.price)
            )
            disc = f" · −{fmt.percent(w.discount_bp)}" if w.discount_bp else ""
            article = f" [{q(w.article)}]" if w.article else ""
            blocks.append(
                f"{w.line_no}. {q(w.item)}{article}\n    {fmt.qty(w.qty_milli)} × {norm}{disc}"
                f" = <b>{fmt.money(w.amount)}</b>"
            )
    if view.goods:
        blocks.append("\n<b>" + _("Goods") + "</b>")
        for g in view.goods:
            number = f" [{q(g.catalogue_number)}]" if g.catalogue_number else ""
            maker = f" · {q(g.maker)}" if g.maker else ""
            disc = f" · −{fmt.percent(g.discount_bp)}" if g.discount_bp else ""
            blocks.append(
                f"{g.line_no}. {q(g.item)}{number}{maker}\n    {fmt.qty(g.qty_milli)} × "
                f"{fmt.money(g.price)}{disc} = <b>{fmt.money(g.amount)}</b>"
            )
    if not blocks:
        blocks.append(_("No lines."))
    pages = fmt.paginate("\n".join(header_lines), blocks)
    if not 0 <= cb.page < len(pages):
        raise Stale("page")
    builder = InlineKeyboardBuilder()
    builder.row(*pager(lambda p: OpenDocument(document_id=d.id, page=p), cb.page, len(pages)))
    if d.doc_type in (DocType.CUSTOMER_ORDER, DocType.WORK_ORDER):
        balance = await ledger.document_balance(ctx.session, d.id)
        linked = await ctx.session.scalar(
            select(Client.telegram_chat_id).where(Client.id == d.client_id)
        )
        if balance is not None:
            for row in order_buttons(
                ctx.staff, balance, client_linked=linked is not None, settings=ctx.settings
            ):
                builder.row(*row)
    if d.doc_type is DocType.WORK_ORDER and can(ctx.staff, Permission.WORK_ORDERS):
        builder.row(*work_order_buttons(d.id, DocState(d.state)))
    if can(ctx.staff, Permission.DOCUMENTS):
        builder.row(*office_state_buttons(d.id, DocType(d.doc_type), DocState(d.state)))
    builder.row(back_button())
    return Screen(pages[cb.page], builder.as_markup())


# --- the car card ---------------------------------------------------------------------


async def car_screen(cb: OpenCar, ctx: ScreenContext) -> Screen:
    ctx.require(Permission.SEARCH)
    with_history = can(ctx.staff, Permission.CAR_HISTORY)
    page_of_history = (max(cb.page, 0) * PAGE, PAGE) if with_history else None
    card = await cards.car_card(ctx.session, cb.car_id, history=page_of_history)
    if card is None:
        raise Stale("car")
    tz = ctx.settings.tz
    lines = [
        f"🚗 <b>{q(card.name)}</b>",
        _("Model: {name}").format(
            name=q(" ".join(p for p in (card.make, card.model, card.body) if p) or card.name)
        ),
        _("Configuration: {name}").format(name=q(card.configuration)),
        _("VIN: {vin}").format(vin=q(card.vin)),
        _("Body number: {number}").format(number=q(card.body_number)),
        _("Plate: {plate}").format(plate=q(card.plate)),
        _("Year: {year}").format(year=q(card.year)),
        _("Mileage: {km}").format(
            km=q(f"{card.mileage:,}".replace(",", " ")) if card.mileage is not None else "—"
        ),
    ]
    builder = InlineKeyboardBuilder()
    for client in card.clients:
        role = _("owner") if str(client.role) == "owner" else _("driver")
        builder.row(
            InlineKeyboardButton(
                text=_cut(f"👤 {client.name} ({role})"),
                callback_data=OpenClient(client_id=client.id).pack(),
            )
        )
    if card.history is not None:
        rows, total = card.history
        page = _page_in_range(cb.page, total)
        lines += ["", "<b>" + _("History ({count})").format(count=total) + "</b>"]
        if not rows:
            lines.append(_("No documents for this car yet."))
        for d in rows:
            repair = f" · {q(d.repair_type)}" if d.repair_type else ""
            lines.append(
                f"• {doc_type_name(d.doc_type)} {q(d.number)} · {fmt.day(d.date, tz)}{repair}"
                f" · {state_name(d.doc_type, d.state)}"
            )
            if may_open_document(ctx.staff, DocType(d.doc_type), True):
                builder.row(
                    InlineKeyboardButton(
                        text=_cut(f"📄 {doc_type_name(d.doc_type)} {d.number}"),
                        callback_data=OpenDocument(document_id=d.id).pack(),
                    )
                )
        builder.row(*pager(lambda p: OpenCar(car_id=card.id, page=p), page, _pages(total)))
    if can(ctx.staff, Permission.CAR_HISTORY):
        builder.row(
            InlineKeyboardButton(
                text=_("Selection history"), callback_data=CarSelections(car_id=card.id).pack()
            )
        )
        link = oem_link(ctx.settings.oem_catalogue_url, card.vin)
        if link is not None:
            builder.row(InlineKeyboardButton(text=_("OEM catalogue"), url=link))
    builder.row(*car_related_buttons(card, ctx.staff))  # booking, arrival (handlers/booking.py)
    if can(ctx.staff, Permission.ORDERS) and card.clients:
        builder.row(
            InlineKeyboardButton(
                text=_("Orders of this car"),
                callback_data=OrdersView(client_id=card.clients[0].id, car_id=card.id).pack(),
            )
        )
    builder.row(back_button())
    return Screen(fmt.paginate(lines[0], lines[1:])[0], builder.as_markup())


async def selections_screen(cb: CarSelections, ctx: ScreenContext) -> Screen:
    ctx.require(Permission.CAR_HISTORY)
    card = await cards.car_card(ctx.session, cb.car_id)
    if card is None:
        raise Stale("car")
    rows, total = await car_selections(
        ctx.session, card.id, offset=max(cb.page, 0) * PAGE, limit=PAGE
    )
    page = _page_in_range(cb.page, total)
    tz = ctx.settings.tz
    lines = [
        f"🚗 <b>{q(card.name)}</b> · {q(card.plate or card.vin or card.body_number)}",
        "",
        "<b>" + _("Selection history ({count})").format(count=total) + "</b>",
    ]
    if not rows:
        lines.append(_("Nothing was picked for this car yet."))
    for r in rows:
        number = f" [{q(r.catalogue_number)}]" if r.catalogue_number else ""
        maker = f" · {q(r.maker)}" if r.maker else ""
        who = f" · {q(r.staff)}" if r.staff else ""
        lines.append(
            f"• {fmt.when(r.created_at, tz)} · {q(r.item)}{number}{maker}"
            f" · {q(selection_source_name(r.source))}{who}"
        )
    builder = InlineKeyboardBuilder()
    builder.row(*pager(lambda p: CarSelections(car_id=card.id, page=p), page, _pages(total)))
    builder.row(back_button())
    return Screen(fmt.paginate(lines[0], lines[1:])[0], builder.as_markup())


async def _cart_screen(cb: CartView, ctx: ScreenContext) -> Screen:
    from handlers.cart import cart_screen  # handlers.cart builds on this module

    return await cart_screen(cb, ctx)


async def _estimate_screen(cb: OpenEstimate, ctx: ScreenContext) -> Screen:
    from handlers.estimate import estimate_screen  # builds on this module

    return await estimate_screen(cb, ctx)


Renderer = Callable[[Any, ScreenContext], Awaitable[Screen]]
RENDERERS: dict[type[CallbackData], Renderer] = {
    SearchPage: search_screen,
    FilterToggle: filters_screen,
    FilterList: filter_list_screen,
    OpenClient: client_screen,
    OrdersView: orders_screen,
    DocumentsFilter: documents_screen,
    OpenDocument: document_screen,
    OpenCar: car_screen,
    CarSelections: selections_screen,
    CartView: _cart_screen,
    OpenEstimate: _estimate_screen,
}


async def render(cb: CallbackData, ctx: ScreenContext) -> Screen:
    return await RENDERERS[type(cb)](cb, ctx)
