"""Taking payment for an order (the seed's item 7: «Оплата» through the cash desk, «ПКО»
through a cash receipt order) and paying by Telegram invoice.

**What can be paid.** An order accepts a payment while it is a charge on the client and
something is still owed on it (``services.ledger``): a customer order in any state but
cancelled (an open one usually; a closed one that was issued on credit still owes), a work
order in progress, completed or closed (closed means the car was issued; a company that
pays later still pays that order). A cancelled order owes nothing, and a work order that is
still a request is not a charge yet, so neither accepts money: a prepayment would only make
a credit to refund.

**Amounts.** By default the whole debt of the order; a part of it is allowed; zero, less,
and more than the debt are refused (:class:`PaymentRefused` carries the debt).

**One payment = one document.** A ``payment`` document, posted, numbered in its own
sequence, ``base_id`` the order, ``client_id`` the order's client, plus its ``payments`` row
(method, cashier, idempotency key or Telegram charge id). Every payment is audited.

**Replays and races.** The order's row is locked before the debt is computed (``SELECT ...
FOR UPDATE`` on PostgreSQL; on SQLite the transaction starts with ``BEGIN IMMEDIATE``,
which lets one writer in at a time), so two cashiers paying the same order at the same
moment are served one after the other and the second sees the first's payment: the order
is never paid twice. Call these functions in a transaction that has not read anything yet
(a fresh session, or ``storage.db.write_transaction``); they start it with the write lock.
The same ``idempotency_key`` (a double tap, a replayed update) returns the first payment
instead of making a second one; so does the same Telegram charge id.

**Telegram invoices.** :func:`invoice_for` drafts an invoice for what the order owes; its
payload is ``p1.<order id>.<amount>.<signature>``, an HMAC-SHA256 of the rest under a key
only the bot knows (``secret``), so neither the order nor the amount can be changed on the
way. :func:`check_pre_checkout` answers Telegram's pre-checkout query: the order must still
accept a payment and still owe at least the amount. :func:`record_telegram_payment` records
``successful_payment`` exactly once per ``telegram_payment_charge_id``. By then the money
has been taken: if the order owes less than was paid meanwhile (a cashier took cash between
the pre-checkout and the payment, or the order was cancelled), the payment is still recorded
in full, so the books show the money that came in, and flagged for the staff: the outcome
says how much is over (``overpaid``), the audit has it, and an unprocessed event on the
client («С новыми событиями») asks someone to refund or move it. The order's debt then goes
negative: the client is in credit (see ``services.ledger``).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services import audit
from services.access import Permission, can
from services.documents import lock_document, start_write
from services.ledger import charges, paid_of
from services.numbering import next_number
from storage.models import (
    Client,
    Direction,
    DocState,
    DocType,
    Document,
    Event,
    EventKind,
    Payment,
    PaymentMethod,
    Staff,
    utcnow,
)

ORDER_TYPES = frozenset({DocType.CUSTOMER_ORDER, DocType.WORK_ORDER})
DESK_METHODS = frozenset({PaymentMethod.CASH_DESK, PaymentMethod.CASH_RECEIPT})
MAX_KEY = 100  # payments.idempotency_key

CURRENCY = "RUB"
# Telegram's limits for one payment in roubles, in kopecks, from
# https://core.telegram.org/bots/payments/currencies.json ("RUB": min_amount, max_amount).
# Telegram keeps them at about US$1 and US$10 000 at the day's rate, so they drift; this is
# the snapshot "min_amount": "8653", "max_amount": "86530475" (86,53 ₽ and 865 304,75 ₽).
# An invoice outside them is refused by Telegram (CURRENCY_TOTAL_AMOUNT_INVALID); we refuse
# it first with the limits in the error. Callers may pass fresher limits.
TELEGRAM_MIN_RUB = 8_653
TELEGRAM_MAX_RUB = 86_530_475
MAX_PAYLOAD = 128  # bytes, Telegram's limit for an invoice payload
MAX_TITLE = 32
MAX_DESCRIPTION = 255
PAYLOAD_VERSION = "p1"
_PAYLOAD = re.compile(r"^p1\.(\d{1,18})\.(\d{1,18})\.([A-Za-z0-9_-]{22})$")


class PaymentProblem(enum.StrEnum):
    FORBIDDEN = "forbidden"  # the role may not take payments
    BAD_METHOD = "bad_method"
    BAD_KEY = "bad_key"  # no idempotency key, or too long
    KEY_REUSED = "key_reused"  # the key was used for another order or amount
    ORDER_NOT_FOUND = "order_not_found"
    NOT_AN_ORDER = "not_an_order"
    ORDER_CANCELLED = "order_cancelled"
    NOT_CHARGED = "not_charged"  # a work order that is still a request
    NOTHING_DUE = "nothing_due"  # already paid
    NOT_POSITIVE = "not_positive"
    MORE_THAN_DEBT = "more_than_debt"
    OUT_OF_TELEGRAM_LIMITS = "out_of_telegram_limits"  # detail: the limits
    BAD_PAYLOAD = "bad_payload"  # not ours, or changed
    BAD_CURRENCY = "bad_currency"
    AMOUNT_MISMATCH = "amount_mismatch"  # the total is not the invoice's amount


class PaymentRefused(ValueError):
    """A payment refused; ``debt`` is the order's debt when it matters (kopecks)."""

    def __init__(
        self, problem: PaymentProblem, detail: str = "", *, debt: int | None = None
    ) -> None:
        message = problem.value
        if detail:
            message += f": {detail}"
        if debt is not None:
            message += f" (debt {debt})"
        super().__init__(message)
        self.problem = problem
        self.detail = detail
        self.debt = debt


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    payment_id: int
    number: str
    order_id: int
    order_number: str
    client_id: int
    amount: int
    method: PaymentMethod
    debt_before: int  # the order's debt just before this payment
    debt_after: int  # and right after it (now, for a replay)
    replayed: bool = False  # True: this payment was made before, nothing new was written
    overpaid: int = 0  # Telegram only: kopecks taken beyond what the order owed

    @property
    def flagged(self) -> bool:
        """Staff must look at it: money taken beyond the debt."""
        return self.overpaid > 0


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """What the handler passes to ``send_invoice`` (one price: ``amount_kopecks``)."""

    amount_kopecks: int
    payload: str
    title: str  # the order's number (≤ 32 characters)
    description: str  # the order's items, shortened to 255 characters
    currency: str
    order_id: int
    order_number: str
    doc_type: DocType


# --- the order and its debt ---------------------------------------------------------


async def _debt(session: AsyncSession, order: Document) -> int:
    paid = int(await session.scalar(select(paid_of(Document)).where(Document.id == order.id)) or 0)
    charge = order.amount if charges(DocType(order.doc_type), DocState(order.state)) else 0
    return charge - paid


def _check_payable(order: Document) -> None:
    doc_type = DocType(order.doc_type)
    if doc_type not in ORDER_TYPES:
        raise PaymentRefused(PaymentProblem.NOT_AN_ORDER, order.number)
    state = DocState(order.state)
    if state is DocState.CANCELLED:
        raise PaymentRefused(PaymentProblem.ORDER_CANCELLED, order.number)
    if not charges(doc_type, state):
        raise PaymentRefused(PaymentProblem.NOT_CHARGED, f"{order.number}: {state}")


async def _locked_order(session: AsyncSession, order_id: int) -> Document:
    await start_write(session)
    order = await lock_document(session, order_id)
    if order is None:
        raise PaymentRefused(PaymentProblem.ORDER_NOT_FOUND, str(order_id))
    return order


async def _outcome(
    session: AsyncSession, payment_doc: Document, payment: Payment, order: Document
) -> PaymentOutcome:
    """The outcome of a payment made earlier (a replay)."""
    debt = await _debt(session, order)
    return PaymentOutcome(
        payment_id=payment_doc.id,
        number=payment_doc.number,
        order_id=order.id,
        order_number=order.number,
        client_id=payment_doc.client_id,
        amount=payment_doc.amount,
        method=PaymentMethod(payment.method),
        debt_before=debt + payment_doc.amount,
        debt_after=debt,
        replayed=True,
    )


async def _existing(
    session: AsyncSession, *, key: str | None = None, charge_id: str | None = None
) -> tuple[Document, Payment] | None:
    stmt = select(Document, Payment).join(Payment, Payment.document_id == Document.id)
    if key is not None:
        stmt = stmt.where(Payment.idempotency_key == key)
    else:
        stmt = stmt.where(Payment.telegram_charge_id == charge_id)
    row = (await session.execute(stmt.execution_options(populate_existing=True))).first()
    return (row[0], row[1]) if row is not None else None


async def _write_payment(
    session: AsyncSession,
    order: Document,
    amount: int,
    *,
    prefix: str,
    method: PaymentMethod,
    cashier: Staff | None,
    idempotency_key: str | None = None,
    telegram_charge_id: str | None = None,
    provider_charge_id: str | None = None,
) -> Document:
    doc = Document(
        doc_type=DocType.PAYMENT,
        number=await next_number(session, DocType.PAYMENT, prefix),
        state=DocState.POSTED,
        client_id=order.client_id,
        car_id=order.car_id,
        organization_id=order.organization_id,
        department_id=order.department_id,
        author_id=cashier.id if cashier is not None else None,
        manager_id=order.manager_id,
        base_id=order.id,
        amount=amount,
    )
    doc.payment = Payment(
        method=method,
        idempotency_key=idempotency_key,
        telegram_charge_id=telegram_charge_id,
        provider_charge_id=provider_charge_id,
        cashier_id=cashier.id if cashier is not None else None,
    )
    session.add(doc)
    await session.flush()
    return doc


async def _touch(session: AsyncSession, client_id: int) -> None:
    """The client's last activity (search ranking), without loading the client."""
    now = utcnow()
    await session.execute(
        update(Client)
        .where(Client.id == client_id, Client.last_activity_at < now)
        .values(last_activity_at=now)
    )


# --- at the cash desk ---------------------------------------------------------------


async def take_payment(
    session: AsyncSession,
    *,
    order_id: int,
    amount: int | None,
    method: PaymentMethod,
    cashier: Staff,
    idempotency_key: str,
    prefix: str,
) -> PaymentOutcome:
    """Takes ``amount`` kopecks (None: the whole debt) for the order through the cash desk
    or a cash receipt order. See the module doc for what is refused and why."""
    if not can(cashier, Permission.PAYMENTS):
        audit.record(
            session,
            "payment.refused",
            actor=cashier,
            entity="document",
            entity_id=order_id,
            details={"problem": PaymentProblem.FORBIDDEN.value},
        )
        raise PaymentRefused(PaymentProblem.FORBIDDEN)
    try:
        method = PaymentMethod(method)
    except ValueError:
        raise PaymentRefused(PaymentProblem.BAD_METHOD, str(method)) from None
    if method not in DESK_METHODS:
        raise PaymentRefused(PaymentProblem.BAD_METHOD, method.value)
    key = (idempotency_key or "").strip()
    if not key or len(key) > MAX_KEY:
        raise PaymentRefused(PaymentProblem.BAD_KEY)

    order = await _locked_order(session, order_id)
    # After the lock: a replay racing its original waits for it and then finds it here.
    earlier = await _existing(session, key=key)
    if earlier is not None:
        payment_doc, payment = earlier
        if payment_doc.base_id != order.id or (
            amount is not None and amount != payment_doc.amount
        ):
            raise PaymentRefused(PaymentProblem.KEY_REUSED, key)
        return await _outcome(session, payment_doc, payment, order)

    _check_payable(order)
    debt = await _debt(session, order)
    if debt <= 0:
        raise PaymentRefused(PaymentProblem.NOTHING_DUE, order.number, debt=debt)
    if amount is None:
        amount = debt
    if amount <= 0:
        raise PaymentRefused(PaymentProblem.NOT_POSITIVE, str(amount), debt=debt)
    if amount > debt:
        raise PaymentRefused(PaymentProblem.MORE_THAN_DEBT, str(amount), debt=debt)

    doc = await _write_payment(
        session,
        order,
        amount,
        prefix=prefix,
        method=method,
        cashier=cashier,
        idempotency_key=key,
    )
    await _touch(session, order.client_id)
    audit.record(
        session,
        "payment.take",
        actor=cashier,
        entity="document",
        entity_id=doc.id,
        details={
            "client_id": order.client_id,
            "order_id": order.id,
            "order_number": order.number,
            "number": doc.number,
            "amount": amount,
            "method": method.value,
            "debt_before": debt,
            "debt_after": debt - amount,
            "idempotency_key": key,
        },
    )
    return PaymentOutcome(
        payment_id=doc.id,
        number=doc.number,
        order_id=order.id,
        order_number=order.number,
        client_id=order.client_id,
        amount=amount,
        method=method,
        debt_before=debt,
        debt_after=debt - amount,
    )


# --- Telegram invoices --------------------------------------------------------------


def _key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("an invoice payload needs a non-empty secret")
    return key


def _signature(secret: str | bytes, order_id: int, amount: int) -> str:
    message = f"{PAYLOAD_VERSION}.{order_id}.{amount}".encode()
    digest = hmac.new(_key(secret), message, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_payload(secret: str | bytes, order_id: int, amount: int) -> str:
    payload = f"{PAYLOAD_VERSION}.{order_id}.{amount}.{_signature(secret, order_id, amount)}"
    assert len(payload.encode()) <= MAX_PAYLOAD
    return payload


def read_payload(secret: str | bytes, payload: str) -> tuple[int, int]:
    """(order id, amount) of a payload we signed, or :class:`PaymentRefused`."""
    match = _PAYLOAD.match(payload or "")
    if match is None:
        raise PaymentRefused(PaymentProblem.BAD_PAYLOAD)
    order_id, amount = int(match[1]), int(match[2])
    if not hmac.compare_digest(match[3], _signature(secret, order_id, amount)):
        raise PaymentRefused(PaymentProblem.BAD_PAYLOAD)
    return order_id, amount


def _describe(order: Document) -> str:
    items = [line.item for line in order.lines]
    text = "; ".join(items) or order.number
    if len(text) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - 1].rstrip() + "…"
    return text


async def invoice_for(
    session: AsyncSession,
    order_id: int,
    *,
    secret: str | bytes,
    amount: int | None = None,
    client_id: int | None = None,
    min_amount: int = TELEGRAM_MIN_RUB,
    max_amount: int = TELEGRAM_MAX_RUB,
) -> InvoiceDraft:
    """A Telegram invoice for what the order owes (or ``amount`` of it), refused when the
    order cannot be paid or the amount is outside Telegram's limits for roubles. A client
    asking for their own invoice passes ``client_id``: another client's order is then
    "not found"."""
    order = await session.scalar(
        select(Document)
        .where(Document.id == order_id)
        .options(selectinload(Document.lines))
        .execution_options(populate_existing=True)
    )
    if order is None or (client_id is not None and order.client_id != client_id):
        raise PaymentRefused(PaymentProblem.ORDER_NOT_FOUND, str(order_id))
    _check_payable(order)
    debt = await _debt(session, order)
    if debt <= 0:
        raise PaymentRefused(PaymentProblem.NOTHING_DUE, order.number, debt=debt)
    amount = debt if amount is None else amount
    if amount <= 0:
        raise PaymentRefused(PaymentProblem.NOT_POSITIVE, str(amount), debt=debt)
    if amount > debt:
        raise PaymentRefused(PaymentProblem.MORE_THAN_DEBT, str(amount), debt=debt)
    if not min_amount <= amount <= max_amount:
        raise PaymentRefused(
            PaymentProblem.OUT_OF_TELEGRAM_LIMITS,
            f"{amount} not within {min_amount}..{max_amount} kopecks",
            debt=debt,
        )
    return InvoiceDraft(
        amount_kopecks=amount,
        payload=make_payload(secret, order.id, amount),
        title=order.number[:MAX_TITLE],
        description=_describe(order),
        currency=CURRENCY,
        order_id=order.id,
        order_number=order.number,
        doc_type=DocType(order.doc_type),
    )


async def check_pre_checkout(
    session: AsyncSession,
    payload: str,
    total_amount: int,
    currency: str,
    *,
    secret: str | bytes,
) -> PaymentProblem | None:
    """None when the payment may go ahead, else why not (for ``answer_pre_checkout_query``
    with ``ok=False``): a payload we did not sign, another currency or amount, an order
    that no longer accepts payment or owes less than the invoice now."""
    try:
        order_id, amount = read_payload(secret, payload)
    except PaymentRefused as refused:
        return refused.problem
    if currency != CURRENCY:
        return PaymentProblem.BAD_CURRENCY
    if total_amount != amount:
        return PaymentProblem.AMOUNT_MISMATCH
    order = await session.scalar(
        select(Document).where(Document.id == order_id).execution_options(populate_existing=True)
    )
    if order is None:
        return PaymentProblem.ORDER_NOT_FOUND
    try:
        _check_payable(order)
    except PaymentRefused as refused:
        return refused.problem
    debt = await _debt(session, order)
    if debt <= 0:
        return PaymentProblem.NOTHING_DUE
    if amount > debt:
        return PaymentProblem.MORE_THAN_DEBT
    return None


async def record_telegram_payment(
    session: AsyncSession,
    payload: str,
    total_amount: int,
    currency: str,
    telegram_payment_charge_id: str,
    provider_payment_charge_id: str | None,
    *,
    secret: str | bytes,
    prefix: str,
    payer_telegram_id: int | None = None,
) -> PaymentOutcome:
    """Records a ``successful_payment`` once per Telegram charge id (a replay returns the
    first payment). The whole ``total_amount`` is recorded even beyond the order's debt,
    and then flagged (see the module doc). Refused only when the payload is not ours or
    the currency is not roubles: then nothing can be booked, and the handler must alert
    the staff with the charge id."""
    charge_id = (telegram_payment_charge_id or "").strip()
    if not charge_id:
        raise PaymentRefused(PaymentProblem.BAD_KEY, "no charge id")
    order_id, invoiced = read_payload(secret, payload)
    if currency != CURRENCY:
        raise PaymentRefused(PaymentProblem.BAD_CURRENCY, currency)
    if total_amount <= 0:
        raise PaymentRefused(PaymentProblem.NOT_POSITIVE, str(total_amount))

    order = await _locked_order(session, order_id)
    earlier = await _existing(session, charge_id=charge_id)
    if earlier is not None:
        payment_doc, payment = earlier
        return await _outcome(session, payment_doc, payment, order)

    debt = await _debt(session, order)
    overpaid = total_amount - max(debt, 0)
    overpaid = max(overpaid, 0)
    doc = await _write_payment(
        session,
        order,
        total_amount,
        prefix=prefix,
        method=PaymentMethod.TELEGRAM,
        cashier=None,
        telegram_charge_id=charge_id,
        provider_charge_id=provider_payment_charge_id,
    )
    details = {
        "client_id": order.client_id,
        "order_id": order.id,
        "order_number": order.number,
        "order_state": str(order.state),
        "number": doc.number,
        "amount": total_amount,
        "invoiced": invoiced,
        "method": PaymentMethod.TELEGRAM.value,
        "debt_before": debt,
        "debt_after": debt - total_amount,
        "overpaid": overpaid,
        "telegram_charge_id": charge_id,
        "provider_charge_id": provider_payment_charge_id,
    }
    audit.record(
        session,
        "payment.telegram",
        actor_telegram_id=payer_telegram_id,
        entity="document",
        entity_id=doc.id,
        details=details,
    )
    now = utcnow()
    if overpaid > 0:
        # The staff's to-do: refund or move the money. Text in figures, the result code for
        # the handler to translate.
        session.add(
            Event(
                client_id=order.client_id,
                car_id=order.car_id,
                kind=EventKind.NOTE,
                direction=Direction.INCOMING,
                text=(
                    f"{doc.number} -> {order.number}: "
                    f"{_rub(total_amount)} paid, {_rub(max(debt, 0))} due, "
                    f"{_rub(overpaid)} over"
                ),
                result="payment_overpaid",
                created_at=now,
            )
        )
        audit.record(
            session,
            "payment.overpaid",
            actor_telegram_id=payer_telegram_id,
            entity="document",
            entity_id=doc.id,
            details={"order_id": order.id, "overpaid": overpaid},
        )
    await _touch(session, order.client_id)
    await session.flush()
    return PaymentOutcome(
        payment_id=doc.id,
        number=doc.number,
        order_id=order.id,
        order_number=order.number,
        client_id=order.client_id,
        amount=total_amount,
        method=PaymentMethod.TELEGRAM,
        debt_before=debt,
        debt_after=debt - total_amount,
        overpaid=overpaid,
    )


def _rub(kopecks: int) -> str:
    sign = "-" if kopecks < 0 else ""
    whole, part = divmod(abs(kopecks), 100)
    return f"{sign}{whole}.{part:02d} RUB"


__all__ = [
    "CURRENCY",
    "TELEGRAM_MAX_RUB",
    "TELEGRAM_MIN_RUB",
    "InvoiceDraft",
    "PaymentOutcome",
    "PaymentProblem",
    "PaymentRefused",
    "check_pre_checkout",
    "invoice_for",
    "make_payload",
    "read_payload",
    "record_telegram_payment",
    "take_payment",
]
