"""Estimates (Калькуляция): works (norm hours × the price per norm-hour of the client's
price type) and parts, with the discount, sent to the client to approve or decline line
by line.

**Versions.** An estimate is made from a cart (its lines move in, priced as the cart
prices them, ``services.cart``). Its ``version`` is the one in force. Changing an estimate
whose version was sent (or decided) makes a new version with the lines copied; the old
version's lines and decisions stay as they were. A press on a button of an old version
is refused: the client sees only what is in force.

**Sending.** Only to a linked client (``Client.telegram_chat_id``), through the
notification outbox (``Kind.ESTIMATE``, key ``estimate:<id>:<version>``, urgent) in the
transaction that marks the version sent.

**Deciding.** :func:`decide` takes a press from the client's own private chat only (the
chat linked now), on a line of the version in force, while it waits for decisions. Every
decision keeps who (the chat), when and which version. When every line is decided the
estimate is decided; the declined lines that did not come from the car's repair plan are
written to a new repair plan of the car (recommendations; those from the plan are still
on it), and the estimate's author and the client's manager are told
(``Kind.ESTIMATE_DECIDED``, digestible).

**After.** :func:`to_work_order` makes a work order (a request) of the approved lines,
once. Everything is audited; services never commit.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit, cart, documents, notify, outbox
from services.access import Permission, can
from services.documents import LineDraft, start_write
from services.numbering import next_number
from services.selections import SelectionSource
from storage.models import (
    CartLine,
    Client,
    DocType,
    Document,
    Estimate,
    EstimateLine,
    EstimateState,
    LineDecision,
    LineKind,
    Staff,
    utcnow,
)

MAX_LINES = cart.MAX_LINES


class EstimateProblem(enum.StrEnum):
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    OUT_OF_DATE = "out_of_date"  # an old version, or not waiting for decisions
    NOT_LINKED = "not_linked"  # the client has no Telegram chat
    OPTED_OUT = "opted_out"  # the client turned the bot's messages off (/stop)
    UNREACHABLE = "unreachable"  # the client's chat answered 403 (blocked the bot)
    NOT_THE_CLIENT = "not_the_client"  # the press came from another chat
    EMPTY = "empty"
    FULL = "full"
    NOT_DECIDED = "not_decided"
    NOTHING_APPROVED = "nothing_approved"
    ALREADY_DONE = "already_done"  # the work order was made


UNREACHED = {
    notify.Reach.NOT_LINKED: EstimateProblem.NOT_LINKED,
    notify.Reach.OPTED_OUT: EstimateProblem.OPTED_OUT,
    notify.Reach.BLOCKED: EstimateProblem.UNREACHABLE,
}


class EstimateRefused(ValueError):
    def __init__(self, problem: EstimateProblem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


@dataclass(frozen=True, slots=True)
class VersionDecision:
    """What the client decided on one version."""

    version: int
    lines: int
    approved: int
    declined: int
    approved_total: int
    last_at: datetime | None
    chat_id: int | None

    @property
    def complete(self) -> bool:
        return self.approved + self.declined == self.lines


@dataclass(frozen=True, slots=True)
class EstimateView:
    estimate: Estimate
    client_name: str
    client_chat_id: int | None
    lines: list[EstimateLine]  # of the version in force
    decisions: list[VersionDecision]  # every version the client decided on, newest first

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def approved_total(self) -> int:
        return sum(line.amount for line in self.lines if line.decision is LineDecision.APPROVED)


@dataclass(frozen=True, slots=True)
class Decided:
    """The outcome of a press: the version's lines now, and whether this press finished
    the version."""

    estimate: Estimate
    lines: list[EstimateLine]
    finished: bool
    changed: bool


def _require(staff: Staff | None, *permissions: Permission) -> Staff:
    if staff is None or not all(can(staff, p) for p in permissions):
        raise EstimateRefused(EstimateProblem.FORBIDDEN)
    return staff


async def _lock(session: AsyncSession, estimate_id: int) -> Estimate:
    estimate = await session.scalar(
        select(Estimate)
        .where(Estimate.id == estimate_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if estimate is None:
        raise EstimateRefused(EstimateProblem.NOT_FOUND, str(estimate_id))
    return estimate


async def lines_of(session: AsyncSession, estimate_id: int, version: int) -> list[EstimateLine]:
    return list(
        await session.scalars(
            select(EstimateLine)
            .where(EstimateLine.estimate_id == estimate_id, EstimateLine.version == version)
            .order_by(EstimateLine.line_no)
            .execution_options(populate_existing=True)
        )
    )


def _line(version: int, no: int, p: cart.PricedLine) -> EstimateLine:
    assert p.price is not None  # cart.take refuses unpriced lines
    return EstimateLine(
        version=version,
        line_no=no,
        kind=p.kind,
        item=p.item,
        catalogue_number=p.catalogue_number,
        maker=p.maker,
        qty_milli=p.qty_milli,
        norm_hours_milli=p.norm_hours_milli,
        price=p.price,
        discount_bp=p.discount_bp,
        amount=p.amount,
        source=p.source,
        plan_line_id=p.plan_line_id,
    )


def _copy(line: EstimateLine, version: int, no: int) -> EstimateLine:
    return EstimateLine(
        estimate_id=line.estimate_id,
        version=version,
        line_no=no,
        kind=line.kind,
        item=line.item,
        catalogue_number=line.catalogue_number,
        maker=line.maker,
        qty_milli=line.qty_milli,
        norm_hours_milli=line.norm_hours_milli,
        price=line.price,
        discount_bp=line.discount_bp,
        amount=line.amount,
        source=line.source,
        plan_line_id=line.plan_line_id,
    )


def _audit(
    session: AsyncSession, action: str, staff: Staff | None, estimate: Estimate, **details: object
) -> None:
    audit.record(
        session,
        action,
        actor=staff,
        actor_telegram_id=estimate.decided_by_chat_id if staff is None else None,
        entity="estimate",
        entity_id=estimate.id,
        details={"client_id": estimate.client_id, "version": estimate.version, **details},
    )


# --- making and changing ------------------------------------------------------------


async def from_cart(
    session: AsyncSession, *, staff: Staff, client_id: int, car_id: int | None
) -> Estimate:
    """A new estimate (version 1, a draft) of the cart's lines; the cart is emptied."""
    _require(staff, Permission.ESTIMATES)
    await start_write(session)
    try:
        _terms, priced = await cart.take(session, client_id, car_id)
    except cart.CartRefused as refused:
        if refused.problem is cart.CartProblem.EMPTY:
            raise EstimateRefused(EstimateProblem.EMPTY) from None
        raise
    estimate = Estimate(
        client_id=client_id,
        car_id=car_id,
        author_id=staff.id,
        version=1,
        state=EstimateState.DRAFT,
    )
    session.add(estimate)
    await session.flush()
    for no, p in enumerate(priced, start=1):
        line = _line(1, no, p)
        line.estimate_id = estimate.id
        session.add(line)
    await session.flush()
    _audit(
        session,
        "estimate.create",
        staff,
        estimate,
        car_id=car_id,
        lines=len(priced),
        total=sum(p.amount for p in priced),
    )
    return estimate


async def _editable(
    session: AsyncSession, staff: Staff, estimate_id: int, version: int
) -> tuple[Estimate, list[EstimateLine]]:
    """The estimate and its lines to change: the version in force, or a new version (the
    lines copied) when that one was sent already."""
    _require(staff, Permission.ESTIMATES)
    await start_write(session)
    estimate = await _lock(session, estimate_id)
    if version != estimate.version or estimate.work_order_id is not None:
        raise EstimateRefused(EstimateProblem.OUT_OF_DATE, f"{version} != {estimate.version}")
    lines = await lines_of(session, estimate.id, estimate.version)
    if EstimateState(estimate.state) is EstimateState.DRAFT:
        return estimate, lines
    estimate.version += 1
    estimate.state = EstimateState.DRAFT
    estimate.sent_at = None
    estimate.decided_at = None
    estimate.decided_by_chat_id = None
    copies = [_copy(line, estimate.version, no) for no, line in enumerate(lines, start=1)]
    session.add_all(copies)
    await session.flush()
    return estimate, copies


async def _renumber(session: AsyncSession, lines: Sequence[EstimateLine]) -> None:
    for no, line in enumerate(lines, start=1):
        line.line_no = no
    await session.flush()


async def remove_line(
    session: AsyncSession, *, staff: Staff, estimate_id: int, version: int, line_no: int
) -> Estimate:
    """Takes line ``line_no`` out (of a new version if this one was sent)."""
    estimate, lines = await _editable(session, staff, estimate_id, version)
    gone = next((line for line in lines if line.line_no == line_no), None)
    if gone is None:
        raise EstimateRefused(EstimateProblem.OUT_OF_DATE, f"line {line_no}")
    await session.delete(gone)
    await session.flush()
    await _renumber(session, [line for line in lines if line is not gone])
    _audit(session, "estimate.remove_line", staff, estimate, item=gone.item, amount=gone.amount)
    return estimate


async def add_cart(
    session: AsyncSession, *, staff: Staff, estimate_id: int, version: int
) -> Estimate:
    """Moves the cart of the estimate's client and car into it (a new version if sent)."""
    estimate, lines = await _editable(session, staff, estimate_id, version)
    try:
        _terms, priced = await cart.take(session, estimate.client_id, estimate.car_id)
    except cart.CartRefused as refused:
        if refused.problem is cart.CartProblem.EMPTY:
            raise EstimateRefused(EstimateProblem.EMPTY, "cart") from None
        raise
    if len(lines) + len(priced) > MAX_LINES:
        raise EstimateRefused(EstimateProblem.FULL, str(MAX_LINES))
    for no, p in enumerate(priced, start=len(lines) + 1):
        line = _line(estimate.version, no, p)
        line.estimate_id = estimate.id
        session.add(line)
    await session.flush()
    _audit(session, "estimate.add_cart", staff, estimate, lines=len(priced))
    return estimate


async def cart_size(session: AsyncSession, estimate: Estimate) -> int:
    car = (
        CartLine.car_id.is_(None)
        if estimate.car_id is None
        else CartLine.car_id == estimate.car_id
    )
    return len(
        (
            await session.scalars(
                select(CartLine.id).where(CartLine.client_id == estimate.client_id, car)
            )
        ).all()
    )


async def send(session: AsyncSession, *, staff: Staff, estimate_id: int, version: int) -> Estimate:
    """Queues the version in force for the client's chat; the estimate waits for them."""
    _require(staff, Permission.ESTIMATES)
    await start_write(session)
    estimate = await _lock(session, estimate_id)
    if version != estimate.version or EstimateState(estimate.state) is not EstimateState.DRAFT:
        raise EstimateRefused(EstimateProblem.OUT_OF_DATE, f"{version}/{estimate.state}")
    # The delivery would drop it, and the estimate would wait for an answer that cannot come.
    client = await session.get(Client, estimate.client_id)
    reach = notify.reach_of(client)
    if client is None or reach is not notify.Reach.IN_BOT:
        raise EstimateRefused(UNREACHED[reach])
    lines = await lines_of(session, estimate.id, estimate.version)
    if not lines:
        raise EstimateRefused(EstimateProblem.EMPTY)
    estimate.state = EstimateState.SENT
    estimate.sent_at = utcnow()
    await session.flush()
    await outbox.enqueue(
        session,
        outbox.Kind.ESTIMATE,
        f"estimate:{estimate.id}:{estimate.version}",
        client_id=client.id,
        payload={"estimate_id": estimate.id, "version": estimate.version},
        urgent=True,
    )
    _audit(
        session,
        "estimate.send",
        staff,
        estimate,
        chat_id=client.telegram_chat_id,
        total=sum(line.amount for line in lines),
    )
    return estimate


# --- the client's decisions ------------------------------------------------------------


async def decide(
    session: AsyncSession,
    *,
    estimate_id: int,
    version: int,
    line_id: int,
    approve: bool,
    chat_id: int,
    prefix: str,
) -> Decided:
    """Records the client's decision on one line (pressed in ``chat_id``). A line already
    decided keeps its decision (a double tap changes nothing); the last decision finishes
    the version."""
    await start_write(session)
    estimate = await _lock(session, estimate_id)
    client = await session.get(Client, estimate.client_id, populate_existing=True)
    if client is None or client.telegram_chat_id is None or client.telegram_chat_id != chat_id:
        raise EstimateRefused(EstimateProblem.NOT_THE_CLIENT, str(chat_id))
    if version != estimate.version or EstimateState(estimate.state) is EstimateState.DRAFT:
        raise EstimateRefused(EstimateProblem.OUT_OF_DATE, f"{version} != {estimate.version}")
    lines = await lines_of(session, estimate.id, estimate.version)
    line = next((x for x in lines if x.id == line_id), None)
    if line is None:
        raise EstimateRefused(EstimateProblem.OUT_OF_DATE, f"line {line_id}")
    if line.decision is not None or EstimateState(estimate.state) is EstimateState.DECIDED:
        return Decided(estimate, lines, finished=False, changed=False)
    now = utcnow()
    line.decision = LineDecision.APPROVED if approve else LineDecision.DECLINED
    line.decided_at = now
    line.decided_by_chat_id = chat_id
    estimate.decided_by_chat_id = chat_id
    await session.flush()
    _audit(
        session,
        "estimate.decide",
        None,
        estimate,
        line_no=line.line_no,
        item=line.item,
        decision=line.decision.value,
        amount=line.amount,
    )
    finished = all(x.decision is not None for x in lines)
    if finished:
        await _finish(session, estimate, client, lines, prefix=prefix)
    return Decided(estimate, lines, finished=finished, changed=True)


async def _finish(
    session: AsyncSession,
    estimate: Estimate,
    client: Client,
    lines: list[EstimateLine],
    *,
    prefix: str,
) -> None:
    estimate.state = EstimateState.DECIDED
    estimate.decided_at = utcnow()
    declined = [
        x
        for x in lines
        if x.decision is LineDecision.DECLINED and x.source != SelectionSource.REPAIR_PLAN.value
    ]
    if declined and estimate.car_id is not None:
        plan = await _recommendations(session, estimate, client, declined, prefix=prefix)
        estimate.plan_id = plan.id
    await session.flush()
    approved = [x for x in lines if x.decision is LineDecision.APPROVED]
    _audit(
        session,
        "estimate.decided",
        None,
        estimate,
        approved=len(approved),
        declined=len(lines) - len(approved),
        approved_total=sum(x.amount for x in approved),
        plan_id=estimate.plan_id,
    )
    for staff_id in dict.fromkeys(s for s in (estimate.author_id, client.manager_id) if s):
        await outbox.enqueue(
            session,
            outbox.Kind.ESTIMATE_DECIDED,
            f"estimate_decided:{estimate.id}:{estimate.version}:{staff_id}",
            staff_id=staff_id,
            payload={"estimate_id": estimate.id, "version": estimate.version},
            digestible=True,
        )


async def _recommendations(
    session: AsyncSession,
    estimate: Estimate,
    client: Client,
    declined: list[EstimateLine],
    *,
    prefix: str,
) -> Document:
    """A repair plan of the car with the declined lines: recommended, not done."""
    made = documents.make_lines([_draft(x) for x in declined])
    plan = Document(
        doc_type=DocType.REPAIR_PLAN,
        number=await next_number(session, DocType.REPAIR_PLAN, prefix),
        state=documents.INITIAL_STATES[DocType.REPAIR_PLAN],
        client_id=client.id,
        car_id=estimate.car_id,
        organization_id=client.organization_id,
        author_id=estimate.author_id,
        manager_id=client.manager_id,
        comment=f"estimate {estimate.id} v{estimate.version}: declined",
        amount=sum(line.amount for line in made),
        lines=made,
    )
    session.add(plan)
    await session.flush()
    audit.record(
        session,
        "document.create",
        actor_telegram_id=estimate.decided_by_chat_id,
        entity="document",
        entity_id=plan.id,
        details={
            "client_id": client.id,
            "car_id": estimate.car_id,
            "doc_type": DocType.REPAIR_PLAN.value,
            "number": plan.number,
            "amount": plan.amount,
            "estimate_id": estimate.id,
            "version": estimate.version,
        },
    )
    return plan


def _draft(line: EstimateLine) -> LineDraft:
    return LineDraft(
        kind=LineKind(line.kind),
        item=line.item,
        price=line.price,
        qty_milli=line.qty_milli,
        norm_hours_milli=line.norm_hours_milli,
        discount_bp=line.discount_bp,
        catalogue_number=line.catalogue_number,
        maker=line.maker,
    )


async def to_work_order(
    session: AsyncSession, *, staff: Staff, estimate_id: int, version: int, prefix: str
) -> Document:
    """A work order (a request) of the approved lines of the decided version, once."""
    _require(staff, Permission.ESTIMATES, Permission.DOCUMENTS)
    await start_write(session)
    estimate = await _lock(session, estimate_id)
    if version != estimate.version:
        raise EstimateRefused(EstimateProblem.OUT_OF_DATE, f"{version} != {estimate.version}")
    if estimate.work_order_id is not None:
        raise EstimateRefused(EstimateProblem.ALREADY_DONE, str(estimate.work_order_id))
    if EstimateState(estimate.state) is not EstimateState.DECIDED:
        raise EstimateRefused(EstimateProblem.NOT_DECIDED)
    lines = await lines_of(session, estimate.id, estimate.version)
    approved = [x for x in lines if x.decision is LineDecision.APPROVED]
    if not approved:
        raise EstimateRefused(EstimateProblem.NOTHING_APPROVED)
    order = await documents.create_work_order(
        session,
        client_id=estimate.client_id,
        actor=staff,
        prefix=prefix,
        car_id=estimate.car_id,
        lines=[_draft(x) for x in approved],
        comment=f"estimate {estimate.id} v{estimate.version}",
    )
    estimate.work_order_id = order.id
    await session.flush()
    _audit(session, "estimate.work_order", staff, estimate, document_id=order.id)
    return order


# --- reading ------------------------------------------------------------------------


async def get_view(session: AsyncSession, estimate_id: int) -> EstimateView | None:
    estimate = await session.get(Estimate, estimate_id, populate_existing=True)
    if estimate is None:
        return None
    client = await session.get(Client, estimate.client_id)
    rows = await session.scalars(
        select(EstimateLine)
        .where(EstimateLine.estimate_id == estimate.id)
        .order_by(EstimateLine.version.desc(), EstimateLine.line_no)
    )
    by_version: dict[int, list[EstimateLine]] = {}
    for line in rows:
        by_version.setdefault(line.version, []).append(line)
    decisions = []
    for version, lines in by_version.items():
        decided = [x for x in lines if x.decision is not None]
        if not decided:
            continue
        last = max(decided, key=lambda x: x.decided_at or estimate.created_at)
        decisions.append(
            VersionDecision(
                version=version,
                lines=len(lines),
                approved=sum(x.decision is LineDecision.APPROVED for x in lines),
                declined=sum(x.decision is LineDecision.DECLINED for x in lines),
                approved_total=sum(x.amount for x in lines if x.decision is LineDecision.APPROVED),
                last_at=last.decided_at,
                chat_id=last.decided_by_chat_id,
            )
        )
    return EstimateView(
        estimate=estimate,
        client_name=client.name if client else "",
        client_chat_id=client.telegram_chat_id if client else None,
        lines=by_version.get(estimate.version, []),
        decisions=decisions,
    )


async def client_estimates(
    session: AsyncSession, client_id: int, *, limit: int = 5
) -> list[Estimate]:
    """The client's newest estimates."""
    return list(
        await session.scalars(
            select(Estimate)
            .where(Estimate.client_id == client_id)
            .order_by(Estimate.id.desc())
            .limit(limit)
        )
    )


__all__ = [
    "Decided",
    "EstimateProblem",
    "EstimateRefused",
    "EstimateView",
    "VersionDecision",
    "add_cart",
    "cart_size",
    "client_estimates",
    "decide",
    "from_cart",
    "get_view",
    "lines_of",
    "remove_line",
    "send",
    "to_work_order",
]
