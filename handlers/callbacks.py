"""Every button's data, typed. Ids and enums only; each packs to at most 64 bytes.

A press is input from outside: handlers re-check the role and re-read the object.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, ClassVar

from aiogram.filters.callback_data import MAX_CALLBACK_LENGTH, CallbackData


class Packed:
    """Packs a button's data as aiogram's ``CallbackData.pack`` does, from the fields the
    model holds instead of a ``model_dump`` of them: a card's keyboard packs a score of
    buttons on every press, and the dump was half of each pack's cost. The same values
    (aiogram's own ``_encode_value``), the same checks (no separator in a value, at most
    64 bytes); ``tests/test_callbacks.py`` checks it against aiogram's ``pack`` for every
    kind of button. Put first among the bases: ``class X(Packed, CallbackData, prefix=...)``.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        __separator__: ClassVar[str]
        __prefix__: ClassVar[str]
        __dict__: dict[str, Any]

        def _encode_value(self, key: str, value: Any) -> str: ...

    def pack(self) -> str:
        separator = self.__separator__
        parts = [self.__prefix__]
        for key, value in self.__dict__.items():  # a model's __dict__ holds its fields, in order
            encoded = self._encode_value(key, value)
            if separator in encoded:
                raise ValueError(
                    f"Separator symbol {separator!r} can not be used in value {key}={encoded!r}"
                )
            parts.append(encoded)
        packed = separator.join(parts)
        if len(packed.encode()) > MAX_CALLBACK_LENGTH:
            raise ValueError(
                f"Resulted callback data is too long! "
                f"len({packed!r}.encode()) > {MAX_CALLBACK_LENGTH}"
            )
        return packed


class ClientTab(enum.StrEnum):
    INFO = "i"
    EVENTS = "e"
    ORDERS = "o"
    DOCUMENTS = "d"
    CARS = "c"
    CONTACT = "r"  # register a contact
    CART = "k"


class SearchPage(Packed, CallbackData, prefix="sp"):
    page: int


class OpenClient(Packed, CallbackData, prefix="cl"):
    client_id: int
    tab: ClientTab = ClientTab.INFO
    page: int = 0


class OpenCar(Packed, CallbackData, prefix="ca"):
    car_id: int
    page: int = 0  # the history page


class OpenDocument(Packed, CallbackData, prefix="dc"):
    document_id: int
    page: int = 0  # a long document is paged, never cut mid-line


class DocumentsFilter(Packed, CallbackData, prefix="df"):
    client_id: int
    doc_type: str = ""  # "" = every type
    organization_id: int = 0  # 0 = every organization
    department_id: int = 0  # 0 = every department
    page: int = 0


class OrdersView(Packed, CallbackData, prefix="ov"):
    client_id: int
    car_id: int = 0  # 0 = every car (the seed's «По автомобилю» toggle)
    page: int = 0


class FilterToggle(Packed, CallbackData, prefix="ft"):
    flt: str


class FilterList(Packed, CallbackData, prefix="fl"):
    page: int


class Back(Packed, CallbackData, prefix="bk"):
    pass


class SetLanguage(Packed, CallbackData, prefix="lg"):
    code: str


class StaffAction(Packed, CallbackData, prefix="sa"):
    """Staff management (admins): invite with a role, deactivate (asked, then confirmed)."""

    action: str  # "list" | "invite" | "ask" | "off"
    staff_id: int = 0
    role: str = ""


class ContactMenu(Packed, CallbackData, prefix="cm"):
    """The client card's ways of contacting and editing (handled in handlers/contact.py):
    ``edit`` (contact information), ``call``, ``sms``, ``email``, ``tg`` (a Telegram message
    to a linked client), ``log`` (register a contact by hand)."""

    client_id: int
    action: str


class PayStart(Packed, CallbackData, prefix="ps"):
    """Take a payment for an order: ``cash_desk`` (Оплата) or ``cash_receipt`` (ПКО)."""

    order_id: int
    method: str


class PayConfirm(Packed, CallbackData, prefix="pc"):
    """The confirmed amount. ``nonce`` was made when the question was asked: a double tap
    or a replayed update carries the same one, and records one payment."""

    order_id: int
    method: str
    amount: int
    nonce: str


class SendInvoice(Packed, CallbackData, prefix="iv"):
    order_id: int


class OrderDocument(Packed, CallbackData, prefix="od"):
    """Make a document on the basis of an order: ``invoice`` or ``sale``."""

    order_id: int
    kind: str


class NewDocument(Packed, CallbackData, prefix="nd"):
    """A new ``order`` (customer order) or ``request`` (repair request) for the client."""

    client_id: int
    kind: str
    car_id: int = 0


class CarSelections(Packed, CallbackData, prefix="sh"):
    """The selection history of a car (История подборов), a page of it."""

    car_id: int
    page: int = 0


class WorkOrderState(Packed, CallbackData, prefix="ws"):
    """Move a work order on (in progress, completed, closed): the car's status the client
    is told about."""

    document_id: int
    state: str


class DocumentState(Packed, CallbackData, prefix="dst"):
    """Close, reopen or cancel a customer order or a repair request from its screen;
    cancelling asks first (``sure``)."""

    document_id: int
    state: str
    sure: bool = False


# --- the cart and estimates (handlers/cart.py, handlers/estimate.py) ---------------------


class CartView(Packed, CallbackData, prefix="kt"):
    """The client's cart for one of the client's cars (0: goods without a car)."""

    client_id: int
    car_id: int = 0


class CartAction(Packed, CallbackData, prefix="kx"):
    """``find`` (search the price list), ``plan`` (the car's repair plan), ``qty`` and
    ``del`` of a line, ``order`` / ``wo`` (a customer order / work order), ``est`` (an
    estimate)."""

    client_id: int
    car_id: int = 0
    action: str
    line_id: int = 0


class PricePick(Packed, CallbackData, prefix="kp"):
    client_id: int
    car_id: int = 0
    item_id: int


class PlanPick(Packed, CallbackData, prefix="kr"):
    client_id: int
    car_id: int
    line_id: int  # a line of the car's repair plan


class OpenEstimate(Packed, CallbackData, prefix="et"):
    estimate_id: int


class EstimateAction(Packed, CallbackData, prefix="ex"):
    """Staff: ``send``, ``del`` (line ``line_no``), ``add`` (the cart), ``wo`` (a work order
    of the approved lines), all on ``version``."""

    estimate_id: int
    version: int
    action: str
    line_no: int = 0


class EstimateDecide(Packed, CallbackData, prefix="ey"):
    """The client: approve (``ok`` 1) or decline (0) a line of a version."""

    estimate_id: int
    version: int
    line_id: int
    ok: int


# --- related workstations: repair booking, car arrival, tire hotel (handlers/booking.py,
# handlers/tires.py). Days are date ordinals, minutes count from the shop-local midnight,
# bays are indexes into BOOKING_BAYS.


class BookingList(Packed, CallbackData, prefix="bkl"):
    client_id: int


class BookingDays(Packed, CallbackData, prefix="bkw"):
    """The day picker; ``booking_id`` set: moving that booking."""

    client_id: int
    car_id: int = 0
    booking_id: int = 0
    page: int = 0


class BookingSlots(Packed, CallbackData, prefix="bks"):
    client_id: int
    day: int
    car_id: int = 0
    booking_id: int = 0


class BookingPick(Packed, CallbackData, prefix="bkp"):
    client_id: int
    day: int
    minute: int
    bay: int
    car_id: int = 0
    booking_id: int = 0


class BookingSave(Packed, CallbackData, prefix="bkv"):
    """Book the picked slot without a reason."""

    client_id: int


class BookingOpen(Packed, CallbackData, prefix="bko"):
    booking_id: int


class BookingCancel(Packed, CallbackData, prefix="bkx"):
    booking_id: int
    sure: bool = False


class ArrivalStart(Packed, CallbackData, prefix="arv"):
    car_id: int
    booking_id: int = 0


class ArrivalStep(Packed, CallbackData, prefix="ars"):
    """``lower`` (the lower mileage is right), ``skip`` (no complaint), ``cancel``."""

    car_id: int
    action: str


class ArrivalMaster(Packed, CallbackData, prefix="arm"):
    car_id: int
    staff_id: int


class TireList(Packed, CallbackData, prefix="tl"):
    client_id: int


class TireForm(Packed, CallbackData, prefix="tf"):
    """The store form: ``new``, ``season``, ``count``, ``wheels``, ``car``, ``plan``
    (months), ``ask`` (type that field next), ``save``, ``cancel``."""

    client_id: int
    field: str
    value: str = ""


class TireOpen(Packed, CallbackData, prefix="to"):
    set_id: int


class TireIssue(Packed, CallbackData, prefix="ti"):
    set_id: int
    sure: bool = False


# --- the client's side (prefixes "x?" for the client's own screens, "l?" for linking) ----


class ClientView(enum.StrEnum):
    MENU = "m"
    CARS = "c"
    ORDERS = "o"
    BOOKINGS = "b"


class ClientScreen(Packed, CallbackData, prefix="xm"):
    """A linked client's screen: the menu, my cars, my orders, my bookings."""

    view: ClientView = ClientView.MENU


class ClientOrder(Packed, CallbackData, prefix="xo"):
    """One of the client's own orders (re-checked on every press)."""

    order_id: int


class ClientPay(Packed, CallbackData, prefix="xp"):
    """A Telegram invoice for the debt of one of the client's own orders."""

    order_id: int


class ClientInvite(Packed, CallbackData, prefix="xi"):
    """Staff: make a one-time invite link for the client's chat (client card)."""

    client_id: int


class LinkDecision(Packed, CallbackData, prefix="lq"):
    """Staff: pending phone link requests. ``list``, ``open``, ``link`` (to ``client_id``)
    or ``none`` (none of these clients)."""

    action: str
    request_id: int = 0
    client_id: int = 0
