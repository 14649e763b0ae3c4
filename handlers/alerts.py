"""How each kind of notification reads: one renderer per ``services.outbox.Kind``.

The delivery worker (``bot.delivery``) loads a claimed row, sets the recipient's language
and calls the kind's renderer with a session and an :class:`AlertContext`. A renderer
re-reads what it tells about and returns ``None`` when that is no longer true (a booking
cancelled since, an event already processed): the row is dropped, not sent.
``digest_line`` is the one line the message takes in a digest, when several digestible
notifications wait for one chat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from handlers import fmt, screens
from handlers.callbacks import (
    ClientPay,
    ClientTab,
    ContactMenu,
    LinkDecision,
    OpenClient,
    OpenDocument,
)
from handlers.contact import EventDone
from handlers.fmt import q
from services import notify
from services.outbox import Kind
from storage.models import DocState, LinkRequestState, Notification


@dataclass(frozen=True)
class Rendered:
    text: str
    markup: InlineKeyboardMarkup | None = None
    digest_line: str | None = None


Renderer = Callable[[AsyncSession, Notification, "AlertContext"], Awaitable[Rendered | None]]
RENDERERS: dict[str, Renderer] = {}


def renders(kind: Kind) -> Callable[[Renderer], Renderer]:
    """Register the renderer of ``kind`` (one per kind)."""

    def register(renderer: Renderer) -> Renderer:
        if kind.value in RENDERERS:
            raise RuntimeError(f"two renderers for {kind.value}")
        RENDERERS[kind.value] = renderer
        return renderer

    return register


@dataclass(frozen=True)
class AlertContext:
    """What renderers need besides the data: the shop's clock, whether payments work."""

    tz: ZoneInfo
    payments: bool = False


DIGEST_CHARS = 3800  # a digest stays one message, under Telegram's 4096


def digest(items: list[Rendered]) -> str:
    """Several notifications for one chat as one message: one line each, as many as fit,
    then how many more. ``digest_line`` is HTML like ``text``: it is never cut (a cut could
    split a tag or an entity), a line that does not fit is counted instead."""
    head = _("{count} new notifications:").format(count=len(items))
    lines: list[str] = []
    size = len(head)
    for item in items:
        line = "• " + (item.digest_line or item.text.split("\n", 1)[0])
        if size + len(line) + 1 > DIGEST_CHARS:
            break
        lines.append(line)
        size += len(line) + 1
    text = "\n".join([head, *lines])
    if len(lines) < len(items):
        text += "\n" + _("…and {count} more.").format(count=len(items) - len(lines))
    return text


def _button(text: str, data: CallbackData) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def _markup(*rows: list[InlineKeyboardButton]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[row for row in rows if row])


def _car(facts: notify.DocumentFacts) -> str:
    parts = [p for p in (facts.car_name, facts.plate) if p]
    return q(", ".join(parts)) if parts else _("your car")


# --- to clients ------------------------------------------------------------------------


@renders(Kind.ORDER_ACCEPTED)
async def order_accepted(
    session: AsyncSession, row: Notification, ctx: AlertContext
) -> Rendered | None:
    facts = await notify.document_facts(session, int(row.payload["document_id"]))
    if facts is None or facts.state not in (DocState.IN_PROGRESS,):
        return None
    text = _("We have taken {car} in for work: work order {number} of {date}.").format(
        car=_car(facts), number=q(facts.number), date=fmt.day(facts.date, ctx.tz)
    )
    return Rendered(text)


@renders(Kind.ORDER_READY)
async def order_ready(
    session: AsyncSession, row: Notification, ctx: AlertContext
) -> Rendered | None:
    facts = await notify.document_facts(session, int(row.payload["document_id"]))
    if facts is None or facts.state is not DocState.COMPLETED:
        return None  # back in work, or already issued: this news is out of date
    lines = [
        _("Good news: {car} is ready, you can pick it up.").format(car=_car(facts)),
        _("Work order {number}: {total}.").format(
            number=q(facts.number), total=fmt.money(facts.total)
        ),
    ]
    if facts.debt > 0:
        lines.append(_("To pay: {debt}.").format(debt=fmt.money(facts.debt)))
    return Rendered("\n".join(lines), client_pay_markup(facts) if ctx.payments else None)


def client_pay_markup(facts: notify.DocumentFacts) -> InlineKeyboardMarkup | None:
    """A Pay button for the client's own order (``handlers.client`` handles the press,
    checking again that the order is the client's)."""
    if facts.debt <= 0:
        return None
    return _markup(
        [
            _button(
                _("Pay {debt}").format(debt=fmt.money(facts.debt)),
                ClientPay(order_id=facts.document_id),
            )
        ]
    )


# --- to staff --------------------------------------------------------------------------


def _event_markup(facts: notify.EventFacts) -> InlineKeyboardMarkup:
    return _markup(
        [
            _button(
                _("Open the card"), OpenClient(client_id=facts.client_id, tab=ClientTab.EVENTS)
            ),
            _button(_("Processed"), EventDone(event_id=facts.event_id)),
        ],
        [_button(_("Call the client"), ContactMenu(client_id=facts.client_id, action="call"))],
    )


def _event_line(facts: notify.EventFacts) -> str:
    what = screens.event_kind_name(facts.kind)
    text = " ".join(facts.text.split())
    return "{client}: {what}{text}".format(
        client=q(facts.client_name),
        what=what,
        text=(" — " + q(fmt.cut(text, 200))) if text else "",
    )


@renders(Kind.NEW_EVENT)
async def new_event(
    session: AsyncSession, row: Notification, ctx: AlertContext
) -> Rendered | None:
    facts = await notify.event_facts(session, int(row.payload["event_id"]))
    if facts is None or facts.processed:
        return None
    line = _event_line(facts)
    text = _("New event at {time}").format(time=fmt.when(facts.created_at, ctx.tz)) + "\n" + line
    return Rendered(text, _event_markup(facts), digest_line=line)


@renders(Kind.ESCALATION)
async def escalation(
    session: AsyncSession, row: Notification, ctx: AlertContext
) -> Rendered | None:
    facts = await notify.event_facts(session, int(row.payload["event_id"]))
    if facts is None or facts.processed:
        return None
    line = _("Still not processed since {time}: {event}").format(
        time=fmt.when(facts.created_at, ctx.tz), event=_event_line(facts)
    )
    return Rendered(line, _event_markup(facts), digest_line=line)


@renders(Kind.NEW_REQUEST)
async def new_request(
    session: AsyncSession, row: Notification, ctx: AlertContext
) -> Rendered | None:
    facts = await notify.document_facts(session, int(row.payload["document_id"]))
    if facts is None or facts.state is not DocState.OPEN:
        return None
    line = _("New repair request {number}: {client}").format(
        number=q(facts.number), client=q(facts.client_name)
    )
    if facts.car_name or facts.plate:
        line += ", " + _car(facts)
    if facts.comment:
        line += " — " + q(fmt.cut(facts.comment, 200))
    markup = _markup(
        [
            _button(_("Open"), OpenDocument(document_id=facts.document_id)),
            _button(_("Open the card"), OpenClient(client_id=facts.client_id)),
        ]
    )
    return Rendered(line, markup, digest_line=line)


@renders(Kind.UNREACHABLE)
async def unreachable(
    session: AsyncSession, row: Notification, ctx: AlertContext
) -> Rendered | None:
    facts = await notify.client_facts(session, int(row.payload["client_id"]))
    if facts is None or not facts.blocked:
        return None
    line = _("{client} cannot be reached in Telegram: the chat refuses our messages.").format(
        client=q(facts.name)
    )
    markup = _markup([_button(_("Open the card"), OpenClient(client_id=facts.client_id))])
    return Rendered(line, markup, digest_line=line)


@renders(Kind.LINK_REQUEST)
async def link_request(
    session: AsyncSession, row: Notification, ctx: AlertContext
) -> Rendered | None:
    request = await notify.link_request_facts(session, int(row.payload["link_request_id"]))
    if request is None or request.state is not LinkRequestState.PENDING:
        return None
    text = _(
        "Someone shared the phone {phone} ({name}) to link their Telegram, and several clients "
        "have this phone. Please decide which client it is."
    ).format(phone=fmt.phone(request.phone), name=q(request.name or "—"))
    return Rendered(text, link_request_markup(request.id))


def link_request_markup(request_id: int) -> InlineKeyboardMarkup:
    """The button that opens the decision (``handlers.linking`` handles the press)."""
    return _markup([_button(_("Decide"), LinkDecision(action="open", request_id=request_id))])


@renders(Kind.DEAD_LETTER)
async def dead_letter(
    session: AsyncSession, row: Notification, ctx: AlertContext
) -> Rendered | None:
    dead = await notify.notification_facts(session, int(row.payload["notification_id"]))
    if dead is None:
        return None
    recipient = (
        _("client #{id}").format(id=dead.client_id)
        if dead.client_id is not None
        else _("staff #{id}").format(id=dead.staff_id)
        if dead.staff_id is not None
        else _("chat {id}").format(id=dead.chat_id)
    )
    text = _("A notification could not be delivered ({kind}, {recipient}): {error}").format(
        kind=q(dead.kind), recipient=recipient, error=q(dead.last_error or "—")
    )
    return Rendered(text)
