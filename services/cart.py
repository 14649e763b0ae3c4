"""The client's cart (Корзина): goods and works picked for the client and one of the
client's cars (or none: the parts store), before they become a document.

**Picking.** From the price list (by name or catalogue number, ``services.pricelist``) and
from the car's repair plan (the lines of its posted ``REPAIR_PLAN`` documents). Every pick
is written to the selection history (``services.selections``) with its source, and the
same item picked again adds to the quantity.

**Prices.** A cart keeps no prices: each time it is shown or turned into a document, a
price-list line takes the price of the client's price type (retail when the client has
none or the item lacks it), a repair-plan line the price-list price of the same catalogue
number, else the plan's own price. The client's active discount card (the best one) gives
the discount of every line. Amounts are rounded half up per line, as documents round them
(``services.documents.line_amount``).

**Who.** Managers and admins (``Permission.CART``) pick anything and make documents;
masters (``Permission.CART_PLAN_WORKS``) put the works of the car's repair plan in the cart
and change or remove those lines; cashiers (and masters) see the cart
(``Permission.CART_VIEW``).

**To a document.** :func:`to_document` turns one cart (client and car) into a customer
order (goods only; open) or a work order (a request, Заявка, as every new work order) in
one transaction, and empties it. The cart's lines are locked first, so two presses at the
same moment make one document. Everything is audited. Services never commit.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services import audit, documents, pricelist
from services.access import Permission, can
from services.documents import LineDraft, line_amount, start_write
from services.selections import SelectionSource, record_pick
from storage.models import (
    CartLine,
    Client,
    ClientCar,
    DiscountCard,
    DocState,
    DocType,
    Document,
    DocumentLine,
    LineKind,
    PriceItem,
    PriceType,
    Staff,
)

MAX_QTY = 1_000_000_000  # thousandths: a million units
MAX_LINES = 40  # lines in one cart (a screen, an estimate message)


class CartProblem(enum.StrEnum):
    FORBIDDEN = "forbidden"
    CLIENT_NOT_FOUND = "client_not_found"
    CAR_NOT_LINKED = "car_not_linked"
    ITEM_NOT_FOUND = "item_not_found"
    LINE_NOT_FOUND = "line_not_found"
    NOT_A_PLAN_LINE = "not_a_plan_line"  # not a line of this car's repair plan
    ALREADY_IN_CART = "already_in_cart"
    BAD_QUANTITY = "bad_quantity"
    EMPTY = "empty"
    FULL = "full"
    NO_PRICE = "no_price"  # detail: the item
    WORKS_IN_ORDER = "works_in_order"  # a customer order is for goods


class CartRefused(ValueError):
    def __init__(self, problem: CartProblem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


class Target(enum.StrEnum):
    CUSTOMER_ORDER = "order"
    WORK_ORDER = "work_order"


@dataclass(frozen=True, slots=True)
class Terms:
    """What the client pays by: the price type and the discount card's discount."""

    price_type_id: int | None
    price_type: str | None
    discount_bp: int
    card_number: str | None


@dataclass(frozen=True, slots=True)
class PricedLine:
    id: int
    kind: LineKind
    item: str
    catalogue_number: str | None
    maker: str | None
    source: str
    qty_milli: int
    norm_hours_milli: int | None
    price: int | None  # None: no price anywhere
    discount_bp: int
    amount: int
    plan_line_id: int | None

    def draft(self) -> LineDraft:
        if self.price is None:
            raise CartRefused(CartProblem.NO_PRICE, self.item)
        return LineDraft(
            kind=self.kind,
            item=self.item,
            price=self.price,
            qty_milli=self.qty_milli,
            norm_hours_milli=self.norm_hours_milli,
            discount_bp=self.discount_bp,
            catalogue_number=self.catalogue_number,
            maker=self.maker,
        )


@dataclass(frozen=True, slots=True)
class CartView:
    client_id: int
    car_id: int | None
    terms: Terms
    lines: list[PricedLine]

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def priced(self) -> bool:
        return all(line.price is not None for line in self.lines)


@dataclass(frozen=True, slots=True)
class PlanLine:
    """A line of the car's repair plan, and whether it is in the cart already."""

    id: int
    document_number: str
    kind: LineKind
    item: str
    catalogue_number: str | None
    qty_milli: int
    norm_hours_milli: int | None
    price: int
    in_cart: bool


def may_edit(staff: Staff | None, kind: LineKind, source: str) -> bool:
    """Managers change any line; masters the works they took from the repair plan."""
    if can(staff, Permission.CART):
        return True
    return (
        can(staff, Permission.CART_PLAN_WORKS)
        and LineKind(kind) is LineKind.WORK
        and source == SelectionSource.REPAIR_PLAN.value
    )


def may_pick_plan(staff: Staff | None) -> bool:
    return can(staff, Permission.CART) or can(staff, Permission.CART_PLAN_WORKS)


def _require(staff: Staff | None, allowed: bool) -> Staff:
    if staff is None or not allowed:
        raise CartRefused(CartProblem.FORBIDDEN)
    return staff


async def _check_client_car(session: AsyncSession, client_id: int, car_id: int | None) -> None:
    if await session.get(Client, client_id) is None:
        raise CartRefused(CartProblem.CLIENT_NOT_FOUND, str(client_id))
    if car_id is not None:
        linked = await session.scalar(
            select(ClientCar.car_id).where(
                ClientCar.client_id == client_id, ClientCar.car_id == car_id
            )
        )
        if linked is None:
            raise CartRefused(CartProblem.CAR_NOT_LINKED, str(car_id))


def _same_cart(client_id: int, car_id: int | None) -> list[ColumnElement[bool]]:
    car = CartLine.car_id.is_(None) if car_id is None else CartLine.car_id == car_id
    return [CartLine.client_id == client_id, car]


async def _size(session: AsyncSession, client_id: int, car_id: int | None) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(CartLine).where(*_same_cart(client_id, car_id))
        )
        or 0
    )


def _check_qty(qty_milli: int) -> None:
    if not 0 < qty_milli <= MAX_QTY:
        raise CartRefused(CartProblem.BAD_QUANTITY, str(qty_milli))


# --- terms and prices -----------------------------------------------------------------


async def client_terms(session: AsyncSession, client_id: int) -> Terms:
    row = (
        await session.execute(
            select(Client.price_type_id, PriceType.name)
            .outerjoin(PriceType, PriceType.id == Client.price_type_id)
            .where(Client.id == client_id)
        )
    ).first()
    card = (
        await session.execute(
            select(DiscountCard.number, DiscountCard.discount_bp)
            .where(DiscountCard.client_id == client_id, DiscountCard.active.is_(True))
            .order_by(DiscountCard.discount_bp.desc(), DiscountCard.id)
            .limit(1)
        )
    ).first()
    discount = max(0, min(10_000, card[1])) if card else 0
    return Terms(
        price_type_id=row[0] if row else None,
        price_type=row[1] if row else None,
        discount_bp=discount,
        card_number=card[0] if card else None,
    )


async def price_lines(
    session: AsyncSession, lines: Sequence[CartLine], terms: Terms
) -> list[PricedLine]:
    found = await pricelist.prices(
        session, (line.price_item_id for line in lines if line.price_item_id), terms.price_type_id
    )
    priced = []
    for line in lines:
        price = found.get(line.price_item_id) if line.price_item_id else None
        if price is None:
            price = line.plan_price
        amount = 0
        if price is not None:
            amount = line_amount(
                LineDraft(
                    LineKind(line.kind),
                    line.item,
                    price,
                    line.qty_milli,
                    line.norm_hours_milli,
                    terms.discount_bp,
                )
            )
        priced.append(
            PricedLine(
                id=line.id,
                kind=LineKind(line.kind),
                item=line.item,
                catalogue_number=line.catalogue_number,
                maker=line.maker,
                source=line.source,
                qty_milli=line.qty_milli,
                norm_hours_milli=line.norm_hours_milli,
                price=price,
                discount_bp=terms.discount_bp,
                amount=amount,
                plan_line_id=line.plan_line_id,
            )
        )
    return priced


async def _lines(
    session: AsyncSession, client_id: int, car_id: int | None, *, lock: bool = False
) -> list[CartLine]:
    stmt = (
        select(CartLine)
        .where(*_same_cart(client_id, car_id))
        .order_by(CartLine.id)
        .execution_options(populate_existing=True)
    )
    if lock:
        stmt = stmt.with_for_update()
    return list(await session.scalars(stmt))


async def view(session: AsyncSession, client_id: int, car_id: int | None) -> CartView:
    """The cart of the client and car (None: goods without a car), priced for the client."""
    terms = await client_terms(session, client_id)
    lines = await _lines(session, client_id, car_id)
    return CartView(client_id, car_id, terms, await price_lines(session, lines, terms))


async def counts(session: AsyncSession, client_id: int) -> dict[int | None, int]:
    """Lines in each of the client's carts: car id (None: no car) -> count."""
    rows = await session.execute(
        select(CartLine.car_id, func.count())
        .where(CartLine.client_id == client_id)
        .group_by(CartLine.car_id)
    )
    return {car_id: int(n) for car_id, n in rows}


# --- picking --------------------------------------------------------------------------


async def add_from_price_list(
    session: AsyncSession,
    *,
    staff: Staff,
    client_id: int,
    car_id: int | None,
    item_id: int,
    qty_milli: int = 1000,
) -> CartLine:
    """Puts a price-list item in the cart (or adds to its quantity there)."""
    _require(staff, can(staff, Permission.CART))
    _check_qty(qty_milli)
    await start_write(session)
    await _check_client_car(session, client_id, car_id)
    item = await session.get(PriceItem, item_id)
    if item is None or not item.active:
        raise CartRefused(CartProblem.ITEM_NOT_FOUND, str(item_id))
    line = await session.scalar(
        select(CartLine).where(
            *_same_cart(client_id, car_id),
            CartLine.price_item_id == item.id,
            CartLine.source == SelectionSource.PRICE_LIST.value,
        )
    )
    if line is not None:
        before = line.qty_milli
        _check_qty(before + qty_milli)
        line.qty_milli = before + qty_milli
    else:
        if await _size(session, client_id, car_id) >= MAX_LINES:
            raise CartRefused(CartProblem.FULL, str(MAX_LINES))
        before = 0
        line = CartLine(
            client_id=client_id,
            car_id=car_id,
            staff_id=staff.id,
            source=SelectionSource.PRICE_LIST.value,
            price_item_id=item.id,
            kind=LineKind(item.kind),
            item=item.name,
            catalogue_number=item.catalogue_number,
            maker=item.maker,
            qty_milli=qty_milli,
            norm_hours_milli=item.norm_hours_milli,
        )
        session.add(line)
    await session.flush()
    await record_pick(
        session,
        staff=staff,
        car_id=car_id,
        client_id=client_id,
        kind=LineKind(item.kind),
        item=item.name,
        catalogue_number=item.catalogue_number,
        maker=item.maker,
        source=SelectionSource.PRICE_LIST,
    )
    _audit(session, "cart.add", staff, line, {"item_id": item.id, "qty_before": before})
    return line


def _audit(session: AsyncSession, action: str, staff: Staff, line: CartLine, extra: dict) -> None:
    audit.record(
        session,
        action,
        actor=staff,
        entity="client",
        entity_id=line.client_id,
        details={
            "car_id": line.car_id,
            "line_id": line.id,
            "item": line.item,
            "source": line.source,
            "qty_milli": line.qty_milli,
            **extra,
        },
    )


def _plan_lines_query(car_id: int) -> Select[DocumentLine, str]:
    return (
        select(DocumentLine, Document.number)
        .join(Document, Document.id == DocumentLine.document_id)
        .where(
            Document.car_id == car_id,
            Document.doc_type == DocType.REPAIR_PLAN,
            Document.state == DocState.POSTED,
        )
    )


async def plan_lines(session: AsyncSession, client_id: int, car_id: int) -> list[PlanLine]:
    """The lines of the car's repair plans (newest plan first), and which are in the
    client's cart for the car."""
    rows = await session.execute(
        _plan_lines_query(car_id).order_by(Document.date.desc(), DocumentLine.line_no).limit(50)
    )
    in_cart = set(
        await session.scalars(
            select(CartLine.plan_line_id).where(
                *_same_cart(client_id, car_id), CartLine.plan_line_id.is_not(None)
            )
        )
    )
    return [
        PlanLine(
            id=line.id,
            document_number=number,
            kind=LineKind(line.kind),
            item=line.item,
            catalogue_number=line.catalogue_number,
            qty_milli=line.qty_milli,
            norm_hours_milli=line.norm_hours_milli,
            price=line.price,
            in_cart=line.id in in_cart,
        )
        for line, number in rows
    ]


async def add_from_plan(
    session: AsyncSession, *, staff: Staff, client_id: int, car_id: int, plan_line_id: int
) -> CartLine:
    """Puts a line of the car's repair plan in the cart, with the plan's quantity."""
    _require(staff, may_pick_plan(staff))
    await start_write(session)
    await _check_client_car(session, client_id, car_id)
    row = (
        await session.execute(_plan_lines_query(car_id).where(DocumentLine.id == plan_line_id))
    ).first()
    if row is None:
        raise CartRefused(CartProblem.NOT_A_PLAN_LINE, str(plan_line_id))
    plan: DocumentLine = row[0]
    _require(staff, may_edit(staff, LineKind(plan.kind), SelectionSource.REPAIR_PLAN.value))
    taken = await session.scalar(
        select(CartLine.id).where(*_same_cart(client_id, car_id), CartLine.plan_line_id == plan.id)
    )
    if taken is not None:
        raise CartRefused(CartProblem.ALREADY_IN_CART, plan.item)
    if await _size(session, client_id, car_id) >= MAX_LINES:
        raise CartRefused(CartProblem.FULL, str(MAX_LINES))
    item = await pricelist.find_by_number(session, LineKind(plan.kind), plan.catalogue_number)
    line = CartLine(
        client_id=client_id,
        car_id=car_id,
        staff_id=staff.id,
        source=SelectionSource.REPAIR_PLAN.value,
        price_item_id=item.id if item is not None else None,
        plan_line_id=plan.id,
        kind=LineKind(plan.kind),
        item=plan.item,
        catalogue_number=plan.catalogue_number,
        maker=plan.maker,
        qty_milli=plan.qty_milli,
        norm_hours_milli=plan.norm_hours_milli,
        plan_price=plan.price,
    )
    session.add(line)
    await session.flush()
    await record_pick(
        session,
        staff=staff,
        car_id=car_id,
        client_id=client_id,
        kind=LineKind(plan.kind),
        item=plan.item,
        catalogue_number=plan.catalogue_number,
        maker=plan.maker,
        source=SelectionSource.REPAIR_PLAN,
    )
    _audit(session, "cart.add", staff, line, {"plan_line_id": plan.id})
    return line


async def _editable(session: AsyncSession, staff: Staff, line_id: int) -> CartLine:
    line = await session.get(CartLine, line_id, populate_existing=True)
    if line is None:
        raise CartRefused(CartProblem.LINE_NOT_FOUND, str(line_id))
    _require(staff, may_edit(staff, LineKind(line.kind), line.source))
    return line


async def set_quantity(
    session: AsyncSession, *, staff: Staff, line_id: int, qty_milli: int
) -> CartLine:
    _require(staff, may_pick_plan(staff))
    _check_qty(qty_milli)
    await start_write(session)
    line = await _editable(session, staff, line_id)
    before = line.qty_milli
    line.qty_milli = qty_milli
    await session.flush()
    _audit(session, "cart.quantity", staff, line, {"qty_before": before})
    return line


async def remove(session: AsyncSession, *, staff: Staff, line_id: int) -> CartLine:
    _require(staff, may_pick_plan(staff))
    await start_write(session)
    line = await _editable(session, staff, line_id)
    await session.delete(line)
    await session.flush()
    _audit(session, "cart.remove", staff, line, {})
    return line


async def take(
    session: AsyncSession, client_id: int, car_id: int | None
) -> tuple[Terms, list[PricedLine]]:
    """The cart's lines, locked, priced and removed (for the caller's document or estimate);
    CartRefused EMPTY or NO_PRICE leaves them."""
    await start_write(session)
    lines = await _lines(session, client_id, car_id, lock=True)
    if not lines:
        raise CartRefused(CartProblem.EMPTY)
    terms = await client_terms(session, client_id)
    priced = await price_lines(session, lines, terms)
    missing = next((p for p in priced if p.price is None), None)
    if missing is not None:
        raise CartRefused(CartProblem.NO_PRICE, missing.item)
    await session.execute(delete(CartLine).where(CartLine.id.in_([line.id for line in lines])))
    return terms, priced


async def to_document(
    session: AsyncSession,
    *,
    staff: Staff,
    client_id: int,
    car_id: int | None,
    target: Target,
    prefix: str,
) -> Document:
    """The cart as a new customer order (goods) or work order; the cart is emptied."""
    _require(staff, can(staff, Permission.CART) and can(staff, Permission.DOCUMENTS))
    target = Target(target)
    await start_write(session)
    await _check_client_car(session, client_id, car_id)
    terms, priced = await take(session, client_id, car_id)
    if target is Target.CUSTOMER_ORDER and any(p.kind is LineKind.WORK for p in priced):
        raise CartRefused(CartProblem.WORKS_IN_ORDER)
    make = (
        documents.create_customer_order
        if target is Target.CUSTOMER_ORDER
        else documents.create_work_order
    )
    doc = await make(
        session,
        client_id=client_id,
        actor=staff,
        prefix=prefix,
        car_id=car_id,
        lines=[p.draft() for p in priced],
    )
    audit.record(
        session,
        "cart.to_document",
        actor=staff,
        entity="client",
        entity_id=client_id,
        details={
            "car_id": car_id,
            "document_id": doc.id,
            "number": doc.number,
            "doc_type": str(doc.doc_type),
            "lines": len(priced),
            "amount": doc.amount,
            "price_type_id": terms.price_type_id,
            "discount_bp": terms.discount_bp,
            "card": terms.card_number,
        },
    )
    return doc


__all__ = [
    "MAX_LINES",
    "CartProblem",
    "CartRefused",
    "CartView",
    "PlanLine",
    "PricedLine",
    "Target",
    "Terms",
    "add_from_plan",
    "add_from_price_list",
    "client_terms",
    "counts",
    "may_edit",
    "may_pick_plan",
    "plan_lines",
    "price_lines",
    "remove",
    "set_quantity",
    "take",
    "to_document",
    "view",
]
