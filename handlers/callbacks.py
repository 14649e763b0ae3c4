"""Every button's data, typed. Ids and enums only; each packs to at most 64 bytes.

A press is input from outside: handlers re-check the role and re-read the object.
"""

from __future__ import annotations

import enum

from aiogram.filters.callback_data import CallbackData


class ClientTab(enum.StrEnum):
    INFO = "i"
    EVENTS = "e"
    ORDERS = "o"
    DOCUMENTS = "d"
    CARS = "c"
    CONTACT = "r"  # register a contact
    CART = "k"


class SearchPage(CallbackData, prefix="sp"):
    page: int


class OpenClient(CallbackData, prefix="cl"):
    client_id: int
    tab: ClientTab = ClientTab.INFO
    page: int = 0


class OpenCar(CallbackData, prefix="ca"):
    car_id: int
    page: int = 0  # the history page


class OpenDocument(CallbackData, prefix="dc"):
    document_id: int
    page: int = 0  # a long document is paged, never cut mid-line


class DocumentsFilter(CallbackData, prefix="df"):
    client_id: int
    doc_type: str = ""  # "" = every type
    organization_id: int = 0  # 0 = every organization
    department_id: int = 0  # 0 = every department
    page: int = 0


class OrdersView(CallbackData, prefix="ov"):
    client_id: int
    car_id: int = 0  # 0 = every car (the seed's «По автомобилю» toggle)
    page: int = 0


class FilterToggle(CallbackData, prefix="ft"):
    flt: str


class FilterList(CallbackData, prefix="fl"):
    page: int


class Back(CallbackData, prefix="bk"):
    pass


class SetLanguage(CallbackData, prefix="lg"):
    code: str


class StaffAction(CallbackData, prefix="sa"):
    """Staff management (admins): invite with a role, deactivate (asked, then confirmed)."""

    action: str  # "list" | "invite" | "ask" | "off"
    staff_id: int = 0
    role: str = ""


class ContactMenu(CallbackData, prefix="cm"):
    """The client card's ways of contacting and editing (handled in handlers/contact.py):
    ``edit`` (contact information), ``call``, ``sms``, ``email``, ``tg`` (a Telegram message
    to a linked client), ``log`` (register a contact by hand)."""

    client_id: int
    action: str


class PayStart(CallbackData, prefix="ps"):
    """Take a payment for an order: ``cash_desk`` (Оплата) or ``cash_receipt`` (ПКО)."""

    order_id: int
    method: str


class PayConfirm(CallbackData, prefix="pc"):
    """The confirmed amount. ``nonce`` was made when the question was asked: a double tap
    or a replayed update carries the same one, and records one payment."""

    order_id: int
    method: str
    amount: int
    nonce: str


class SendInvoice(CallbackData, prefix="iv"):
    order_id: int


class OrderDocument(CallbackData, prefix="od"):
    """Make a document on the basis of an order: ``invoice`` or ``sale``."""

    order_id: int
    kind: str


class NewDocument(CallbackData, prefix="nd"):
    """A new ``order`` (customer order) or ``request`` (repair request) for the client."""

    client_id: int
    kind: str
    car_id: int = 0


class CarSelections(CallbackData, prefix="sh"):
    """The selection history of a car (История подборов), a page of it."""

    car_id: int
    page: int = 0


class WorkOrderState(CallbackData, prefix="ws"):
    """Move a work order on (in progress, completed, closed): the car's status the client
    is told about."""

    document_id: int
    state: str


class DocumentState(CallbackData, prefix="dst"):
    """Close, reopen or cancel a customer order or a repair request from its screen;
    cancelling asks first (``sure``)."""

    document_id: int
    state: str
    sure: bool = False


# --- the cart and estimates (handlers/cart.py, handlers/estimate.py) ---------------------


class CartView(CallbackData, prefix="kt"):
    """The client's cart for one of the client's cars (0: goods without a car)."""

    client_id: int
    car_id: int = 0


class CartAction(CallbackData, prefix="kx"):
    """``find`` (search the price list), ``plan`` (the car's repair plan), ``qty`` and
    ``del`` of a line, ``order`` / ``wo`` (a customer order / work order), ``est`` (an
    estimate)."""

    client_id: int
    car_id: int = 0
    action: str
    line_id: int = 0


class PricePick(CallbackData, prefix="kp"):
    client_id: int
    car_id: int = 0
    item_id: int


class PlanPick(CallbackData, prefix="kr"):
    client_id: int
    car_id: int
    line_id: int  # a line of the car's repair plan


class OpenEstimate(CallbackData, prefix="et"):
    estimate_id: int


class EstimateAction(CallbackData, prefix="ex"):
    """Staff: ``send``, ``del`` (line ``line_no``), ``add`` (the cart), ``wo`` (a work order
    of the approved lines), all on ``version``."""

    estimate_id: int
    version: int
    action: str
    line_no: int = 0


class EstimateDecide(CallbackData, prefix="ey"):
    """The client: approve (``ok`` 1) or decline (0) a line of a version."""

    estimate_id: int
    version: int
    line_id: int
    ok: int


# --- related workstations: repair booking, car arrival, tire hotel (handlers/booking.py,
# handlers/tires.py). Days are date ordinals, minutes count from the shop-local midnight,
# bays are indexes into BOOKING_BAYS.


class BookingList(CallbackData, prefix="bkl"):
    client_id: int


class BookingDays(CallbackData, prefix="bkw"):
    """The day picker; ``booking_id`` set: moving that booking."""

    client_id: int
    car_id: int = 0
    booking_id: int = 0
    page: int = 0


class BookingSlots(CallbackData, prefix="bks"):
    client_id: int
    day: int
    car_id: int = 0
    booking_id: int = 0


class BookingPick(CallbackData, prefix="bkp"):
    client_id: int
    day: int
    minute: int
    bay: int
    car_id: int = 0
    booking_id: int = 0


class BookingSave(CallbackData, prefix="bkv"):
    """Book the picked slot without a reason."""

    client_id: int


class BookingOpen(CallbackData, prefix="bko"):
    booking_id: int


class BookingCancel(CallbackData, prefix="bkx"):
    booking_id: int
    sure: bool = False


class ArrivalStart(CallbackData, prefix="arv"):
    car_id: int
    booking_id: int = 0


class ArrivalStep(CallbackData, prefix="ars"):
    """``lower`` (the lower mileage is right), ``skip`` (no complaint), ``cancel``."""

    car_id: int
    action: str


class ArrivalMaster(CallbackData, prefix="arm"):
    car_id: int
    staff_id: int


class TireList(CallbackData, prefix="tl"):
    client_id: int


class TireForm(CallbackData, prefix="tf"):
    """The store form: ``new``, ``season``, ``count``, ``wheels``, ``car``, ``plan``
    (months), ``ask`` (type that field next), ``save``, ``cancel``."""

    client_id: int
    field: str
    value: str = ""


class TireOpen(CallbackData, prefix="to"):
    set_id: int


class TireIssue(CallbackData, prefix="ti"):
    set_id: int
    sure: bool = False


# --- the client's side (prefixes "x?" for the client's own screens, "l?" for linking) ----


class ClientView(enum.StrEnum):
    MENU = "m"
    CARS = "c"
    ORDERS = "o"
    BOOKINGS = "b"


class ClientScreen(CallbackData, prefix="xm"):
    """A linked client's screen: the menu, my cars, my orders, my bookings."""

    view: ClientView = ClientView.MENU


class ClientOrder(CallbackData, prefix="xo"):
    """One of the client's own orders (re-checked on every press)."""

    order_id: int


class ClientPay(CallbackData, prefix="xp"):
    """A Telegram invoice for the debt of one of the client's own orders."""

    order_id: int


class ClientInvite(CallbackData, prefix="xi"):
    """Staff: make a one-time invite link for the client's chat (client card)."""

    client_id: int


class LinkDecision(CallbackData, prefix="lq"):
    """Staff: pending phone link requests. ``list``, ``open``, ``link`` (to ``client_id``)
    or ``none`` (none of these clients)."""

    action: str
    request_id: int = 0
    client_id: int = 0
