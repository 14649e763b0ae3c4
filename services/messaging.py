"""Contacting the client (Связь с клиентом): calls, SMS, e-mail, Telegram, registered contacts.

Every contact lands on the client's Events tab as an :class:`~storage.models.Event`, with
its author, and is audited.

**Which events are new.** An event is *new* (unprocessed) while somebody still has to act
on it; the «С новыми событиями» filter lists the clients that have such events. A contact
that a staff member made and finished is processed by that staff member at once; it stays
new when it needs a follow-up:

- a call with the outcome ``no_answer`` or ``call_back``;
- a message whose delivery failed (or is still pending);
- a registered contact marked ``follow_up``.

:func:`mark_processed` and :func:`mark_all_processed` process events by hand, keeping who
and when; processing an event twice changes nothing.

**Messages that leave the shop** (SMS, e-mail) are written in two steps, each its own short
transaction, so that nothing is lost and no database lock is held while a provider answers:
the event is committed first with ``delivery_status`` ``pending`` and the recipient, then
the message is sent, then the event is updated to ``sent`` (``recorded`` for the recording
gateway) or ``failed`` with the reason. A failure of the provider (HTTP error, timeout,
refused connection, SMTP error, a bug in a gateway) never raises to the caller: it is in
the event and in the returned :class:`DeliveryOutcome`. These functions take the session
*factory* for that reason. Only a refusal of the request itself (no such client, no phone,
empty text, a role without the right) raises :class:`MessagingRefused`, before anything is
written.

**Telegram messages** are sent by the handler (this package knows nothing of Telegram):
:func:`prepare_telegram_message` records the pending event and returns what to send and
where; the handler commits, sends, and reports with :func:`record_delivery`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Protocol

import aiohttp
import aiosmtplib
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import audit, notify
from services.access import Permission, can
from services.normalize import InvalidPhone, parse_phone
from storage.db import begin_immediate, write_transaction
from storage.models import (
    Car,
    Client,
    ClientCar,
    ContactInfo,
    ContactKind,
    Direction,
    Event,
    EventKind,
    Staff,
)

log = logging.getLogger(__name__)

MAX_SMS = 1000  # a long SMS is split by the provider; this is a sanity bound
MAX_EMAIL_SUBJECT = 200
MAX_EMAIL_BODY = 100_000
MAX_TELEGRAM = 4096  # Telegram's limit for one text message
MAX_COMMENT = 4000
MAX_RESULT = 40  # events.result
MAX_ERROR = 500  # events.delivery_error
DEFAULT_SEND_TIMEOUT = 30.0


class CallOutcome(enum.StrEnum):
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    CALL_BACK = "call_back"


FOLLOW_UP_OUTCOMES = frozenset({CallOutcome.NO_ANSWER, CallOutcome.CALL_BACK})


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # written, not sent yet (or the process stopped while sending)
    SENT = "sent"  # the provider accepted it
    RECORDED = "recorded"  # no provider configured: kept in the log only
    FAILED = "failed"  # see events.delivery_error


DONE_STATUSES = frozenset({DeliveryStatus.SENT, DeliveryStatus.RECORDED})


class MessagingProblem(enum.StrEnum):
    FORBIDDEN = "forbidden"
    CLIENT_NOT_FOUND = "client_not_found"
    CAR_NOT_LINKED = "car_not_linked"  # the car is not one of the client's
    EVENT_NOT_FOUND = "event_not_found"
    EMPTY = "empty"
    TOO_LONG = "too_long"
    NAIVE_TIME = "naive_time"  # a call-back time without a time zone
    NO_PHONE = "no_phone"
    BAD_PHONE = "bad_phone"
    NO_EMAIL = "no_email"
    BAD_EMAIL = "bad_email"
    NOT_LINKED = "not_linked"  # the client has no Telegram chat with the bot


class MessagingRefused(ValueError):
    def __init__(self, problem: MessagingProblem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


# --- SMS gateways -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmsResult:
    status: DeliveryStatus
    provider_id: str | None = None
    error: str | None = None


class SmsGateway(Protocol):
    async def send(self, phone_e164: str, text: str) -> SmsResult:
        """Send ``text`` to ``phone_e164`` (``+79451231010``). Report failures in the
        result; an exception is also taken as a failure by :func:`send_sms`."""
        ...


@dataclass(slots=True)
class RecordingSmsGateway:
    """The default for a shop without an SMS provider: nothing leaves, everything is logged
    (status ``recorded``), so the contact is still on the Events tab. ``sent`` keeps the
    last :attr:`keep` messages in memory (for tests and the demo), not every one since the
    bot started: the events table is where they stay."""

    keep: int = 1000
    _sent: deque[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        self._sent = deque(maxlen=self.keep)

    @property
    def sent(self) -> list[tuple[str, str]]:
        return list(self._sent)

    async def send(self, phone_e164: str, text: str) -> SmsResult:
        self._sent.append((phone_e164, text))
        return SmsResult(DeliveryStatus.RECORDED)


class HttpSmsGateway:
    """Posts ``{"to": "+7...", "text": "...", "from": sender}`` as JSON to ``url`` with the
    API key in the ``key_header`` header. Any 2xx answer is success; the provider's message
    id is taken from ``id`` or ``message_id`` of a JSON answer when there is one. The key is
    never logged, never put in an error, never shown by ``repr``."""

    def __init__(
        self,
        url: str,
        api_key: str,
        client: aiohttp.ClientSession,
        *,
        key_header: str = "X-Api-Key",
        sender: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the SMS gateway URL must be http(s)")
        self.url = url
        self._api_key = api_key
        self._client = client
        self.key_header = key_header
        self.sender = sender
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"HttpSmsGateway(url={self.url!r}, key_header={self.key_header!r})"

    def _clean(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text[:MAX_ERROR]

    async def send(self, phone_e164: str, text: str) -> SmsResult:
        payload: dict[str, Any] = {"to": phone_e164, "text": text}
        if self.sender:
            payload["from"] = self.sender
        try:
            async with self._client.post(
                self.url,
                json=payload,
                headers={self.key_header: self._api_key},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                body = await response.text(errors="replace")
                if not 200 <= response.status < 300:
                    return SmsResult(
                        DeliveryStatus.FAILED,
                        error=self._clean(f"HTTP {response.status}: {body.strip()[:200]}"),
                    )
                return SmsResult(DeliveryStatus.SENT, provider_id=_provider_id(body))
        except TimeoutError:
            return SmsResult(DeliveryStatus.FAILED, error=f"timeout after {self.timeout:g} s")
        except aiohttp.ClientError as exc:
            return SmsResult(DeliveryStatus.FAILED, error=self._clean(_describe(exc)))


def _provider_id(body: str) -> str | None:
    import json

    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        for key in ("id", "message_id"):
            if data.get(key) is not None:
                return str(data[key])[:200]
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- e-mail -------------------------------------------------------------------------


class TlsMode(enum.StrEnum):
    NONE = "none"  # plain SMTP (a relay on the same host)
    STARTTLS = "starttls"  # plain, then upgraded (port 587)
    TLS = "tls"  # TLS from the start (port 465)


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """How to reach the shop's mail server; built by the caller from its settings."""

    host: str
    port: int
    from_address: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsMode = TlsMode.STARTTLS
    timeout: float = DEFAULT_SEND_TIMEOUT
    validate_certs: bool = True


# --- results ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    event_id: int
    status: DeliveryStatus
    recipient: str
    error: str | None = None
    provider_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in DONE_STATUSES


@dataclass(frozen=True, slots=True)
class TelegramDraft:
    """What the handler sends: ``text`` to ``chat_id``; then it reports on ``event_id``."""

    event_id: int
    chat_id: int
    text: str


# --- helpers ------------------------------------------------------------------------


def _require(staff: Staff | None) -> Staff:
    if staff is None or not can(staff, Permission.EVENTS):
        raise MessagingRefused(MessagingProblem.FORBIDDEN)
    return staff


def _text(value: str | None, limit: int, *, allow_empty: bool = False) -> str:
    text = (value or "").strip()
    if not text and not allow_empty:
        raise MessagingRefused(MessagingProblem.EMPTY)
    if len(text) > limit:
        raise MessagingRefused(MessagingProblem.TOO_LONG, f"at most {limit} characters")
    return text


def _now() -> datetime:
    return datetime.now(UTC)


async def _start(session: AsyncSession) -> None:
    if not session.in_transaction():
        await begin_immediate(session)


async def _client(session: AsyncSession, client_id: int) -> Client:
    client = await session.get(Client, client_id)
    if client is None:
        raise MessagingRefused(MessagingProblem.CLIENT_NOT_FOUND, str(client_id))
    return client


async def _check_car(session: AsyncSession, client_id: int, car_id: int | None) -> None:
    if car_id is None:
        return
    linked = await session.scalar(
        select(ClientCar.car_id).where(
            ClientCar.client_id == client_id, ClientCar.car_id == car_id
        )
    )
    if linked is None:
        raise MessagingRefused(MessagingProblem.CAR_NOT_LINKED, str(car_id))


async def _touch(session: AsyncSession, client_id: int, car_id: int | None, at: datetime) -> None:
    """Last activity of the client and car (search ranking), without an ORM load: the flush
    hook would rewrite the client's search terms for nothing."""
    await session.execute(
        update(Client)
        .where(Client.id == client_id, Client.last_activity_at < at)
        .values(last_activity_at=at)
    )
    if car_id is not None:
        await session.execute(
            update(Car)
            .where(Car.id == car_id, Car.last_activity_at < at)
            .values(last_activity_at=at)
        )


async def _add_event(
    session: AsyncSession,
    *,
    client_id: int,
    car_id: int | None,
    staff: Staff,
    kind: EventKind,
    direction: Direction,
    text: str,
    result: str | None = None,
    delivery_status: DeliveryStatus | None = None,
    recipient: str | None = None,
    call_back_at: datetime | None = None,
    processed: bool,
    details: dict[str, Any] | None = None,
) -> Event:
    now = _now()
    event = Event(
        client_id=client_id,
        car_id=car_id,
        kind=kind,
        direction=direction,
        author_id=staff.id,
        text=text,
        result=result,
        delivery_status=delivery_status.value if delivery_status is not None else None,
        recipient=recipient,
        call_back_at=call_back_at,
        created_at=now,
        processed_at=now if processed else None,
        processed_by_id=staff.id if processed else None,
    )
    session.add(event)
    await session.flush()
    await notify.event_created(session, event)
    await _touch(session, client_id, car_id, now)
    audit.record(
        session,
        f"event.{kind.value}",
        actor=staff,
        entity="client",
        entity_id=client_id,
        details={
            "event_id": event.id,
            "direction": direction.value,
            "result": result,
            "recipient": recipient,
            **(details or {}),
        },
    )
    return event


# --- calls and registered contacts --------------------------------------------------


async def log_call(
    session: AsyncSession,
    client_id: int,
    staff: Staff,
    outcome: CallOutcome,
    call_back_at: datetime | None = None,
    comment: str = "",
    *,
    car_id: int | None = None,
    phone: str | None = None,
    region: str = "RU",
) -> Event:
    """An outgoing call and its outcome (stored in ``result``); ``call_back_at`` is the time
    the client asked to be called back. Stays new when the outcome needs a follow-up."""
    _require(staff)
    outcome = CallOutcome(outcome)
    text = _text(comment, MAX_COMMENT, allow_empty=True)
    if call_back_at is not None and call_back_at.tzinfo is None:
        raise MessagingRefused(MessagingProblem.NAIVE_TIME)
    recipient = None
    if phone:
        try:
            recipient = parse_phone(phone, region)
        except InvalidPhone as exc:
            raise MessagingRefused(MessagingProblem.BAD_PHONE, str(exc)) from None
    await _start(session)
    client = await _client(session, client_id)
    await _check_car(session, client_id, car_id)
    return await _add_event(
        session,
        client_id=client_id,
        car_id=car_id,
        staff=staff,
        kind=EventKind.CALL,
        direction=Direction.OUTGOING,
        text=text,
        result=outcome.value,
        recipient=recipient or client.main_phone,
        call_back_at=call_back_at.astimezone(UTC) if call_back_at else None,
        processed=outcome not in FOLLOW_UP_OUTCOMES,
        details={"call_back_at": call_back_at.isoformat() if call_back_at else None},
    )


async def log_manual_contact(
    session: AsyncSession,
    client_id: int,
    staff: Staff,
    kind: EventKind,
    direction: Direction,
    result: str | None,
    comment: str,
    *,
    car_id: int | None = None,
    follow_up: bool = False,
) -> Event:
    """«Регистрация контакта с клиентом»: a contact that happened outside the bot (a visit,
    a call taken at the desk, a note). ``result`` is a short outcome (≤ 40 characters).
    Processed by its author unless ``follow_up``: then it stays new for the team."""
    _require(staff)
    kind = EventKind(kind)
    direction = Direction(direction)
    text = _text(comment, MAX_COMMENT, allow_empty=result is not None)
    result = _text(result, MAX_RESULT) if result is not None else None
    await _start(session)
    await _client(session, client_id)
    await _check_car(session, client_id, car_id)
    return await _add_event(
        session,
        client_id=client_id,
        car_id=car_id,
        staff=staff,
        kind=kind,
        direction=direction,
        text=text,
        result=result,
        processed=not follow_up,
        details={"registered": True, "follow_up": follow_up},
    )


# --- SMS and e-mail -----------------------------------------------------------------


async def _sms_recipient(session: AsyncSession, client: Client) -> str:
    """The main phone if it is a mobile, else the first mobile, else the main phone."""
    mobiles = list(
        await session.scalars(
            select(ContactInfo.value)
            .where(ContactInfo.client_id == client.id, ContactInfo.kind == ContactKind.MOBILE)
            .order_by(ContactInfo.id)
        )
    )
    if client.main_phone and client.main_phone in mobiles:
        return client.main_phone
    if mobiles:
        return mobiles[0]
    if client.main_phone:
        return client.main_phone
    raise MessagingRefused(MessagingProblem.NO_PHONE)


async def _email_recipient(session: AsyncSession, client: Client) -> str:
    address = await session.scalar(
        select(ContactInfo.value)
        .where(ContactInfo.client_id == client.id, ContactInfo.kind == ContactKind.EMAIL)
        .order_by(ContactInfo.id)
        .limit(1)
    )
    if address is None:
        raise MessagingRefused(MessagingProblem.NO_EMAIL)
    return address


async def _finish(
    factory: async_sessionmaker[AsyncSession],
    event_id: int,
    staff: Staff,
    result: SmsResult,
    recipient: str,
) -> DeliveryOutcome:
    async with write_transaction(factory) as session:
        await _set_delivery(session, event_id, result, staff_id=staff.id)
        audit.record(
            session,
            "event.delivery",
            actor=staff,
            entity="event",
            entity_id=event_id,
            details={"status": result.status.value, "error": result.error},
        )
    return DeliveryOutcome(event_id, result.status, recipient, result.error, result.provider_id)


async def _set_delivery(
    session: AsyncSession, event_id: int, result: SmsResult, *, staff_id: int | None
) -> None:
    values: dict[str, Any] = {
        "delivery_status": result.status.value,
        "delivery_error": (result.error or None) and result.error[:MAX_ERROR],
        "provider_message_id": result.provider_id,
    }
    if result.status in DONE_STATUSES:
        # A delivered message needs nothing more; processed by its author.
        values["processed_at"] = _now()
        values["processed_by_id"] = staff_id
    await session.execute(update(Event).where(Event.id == event_id).values(**values))


async def _guarded(send: Callable[[], Awaitable[SmsResult]], seconds: float) -> SmsResult:
    """Runs a send; whatever goes wrong becomes a failed result, never an exception."""
    try:
        async with asyncio.timeout(seconds):
            result = await send()
    except TimeoutError:
        return SmsResult(DeliveryStatus.FAILED, error=f"timeout after {seconds:g} s")
    except Exception as exc:
        log.warning("message delivery failed: %s", type(exc).__name__)
        return SmsResult(DeliveryStatus.FAILED, error=_describe(exc)[:MAX_ERROR])
    if not isinstance(result, SmsResult):
        return SmsResult(DeliveryStatus.FAILED, error="the gateway gave no result")
    return result


async def send_sms(
    factory: async_sessionmaker[AsyncSession],
    *,
    client_id: int,
    staff: Staff,
    text: str,
    gateway: SmsGateway,
    phone: str | None = None,
    car_id: int | None = None,
    region: str = "RU",
    send_timeout: float = DEFAULT_SEND_TIMEOUT,
) -> DeliveryOutcome:
    """Sends an SMS to ``phone`` (default: the client's main mobile) through ``gateway``;
    see the module doc for the two transactions and the failure rules."""
    _require(staff)
    body = _text(text, MAX_SMS)
    async with write_transaction(factory) as session:
        client = await _client(session, client_id)
        await _check_car(session, client_id, car_id)
        if phone:
            try:
                recipient = parse_phone(phone, region)
            except InvalidPhone as exc:
                raise MessagingRefused(MessagingProblem.BAD_PHONE, str(exc)) from None
        else:
            recipient = await _sms_recipient(session, client)
        event = await _add_event(
            session,
            client_id=client_id,
            car_id=car_id,
            staff=staff,
            kind=EventKind.SMS,
            direction=Direction.OUTGOING,
            text=body,
            delivery_status=DeliveryStatus.PENDING,
            recipient=recipient,
            processed=False,
        )
        event_id = event.id
    result = await _guarded(lambda: gateway.send("+" + recipient, body), send_timeout)
    return await _finish(factory, event_id, staff, result, recipient)


def _email_address(value: str) -> str:
    try:
        return str(validate_email(value.strip(), check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise MessagingRefused(MessagingProblem.BAD_EMAIL, str(exc)) from None


def build_email(smtp: SmtpSettings, to: str, subject: str, body: str) -> EmailMessage:
    """The message as it is sent: UTF-8, a Message-ID of the sender's domain."""
    message = EmailMessage()
    message["From"] = smtp.from_address
    message["To"] = to
    message["Subject"] = subject
    domain = smtp.from_address.rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(body, charset="utf-8")
    return message


async def _smtp_send(smtp: SmtpSettings, message: EmailMessage) -> SmsResult:
    try:
        await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password,
            use_tls=smtp.tls is TlsMode.TLS,
            start_tls=smtp.tls is TlsMode.STARTTLS,
            timeout=smtp.timeout,
            validate_certs=smtp.validate_certs,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        error = _describe(exc)
        if smtp.password:
            error = error.replace(smtp.password, "***")
        return SmsResult(DeliveryStatus.FAILED, error=error[:MAX_ERROR])
    return SmsResult(DeliveryStatus.SENT, provider_id=str(message["Message-ID"]))


async def send_email(
    factory: async_sessionmaker[AsyncSession],
    *,
    client_id: int,
    staff: Staff,
    subject: str,
    body: str,
    smtp: SmtpSettings,
    to: str | None = None,
    car_id: int | None = None,
) -> DeliveryOutcome:
    """Sends an e-mail to ``to`` (default: the client's first e-mail contact) over SMTP;
    the event's text is the subject, a blank line and the body. Same rules as SMS."""
    _require(staff)
    subject = " ".join((subject or "").split())  # no line breaks in a header
    if len(subject) > MAX_EMAIL_SUBJECT:
        raise MessagingRefused(MessagingProblem.TOO_LONG, f"subject: at most {MAX_EMAIL_SUBJECT}")
    content = _text(body, MAX_EMAIL_BODY)
    async with write_transaction(factory) as session:
        client = await _client(session, client_id)
        await _check_car(session, client_id, car_id)
        recipient = _email_address(to) if to else await _email_recipient(session, client)
        event = await _add_event(
            session,
            client_id=client_id,
            car_id=car_id,
            staff=staff,
            kind=EventKind.EMAIL,
            direction=Direction.OUTGOING,
            text=f"{subject}\n\n{content}" if subject else content,
            delivery_status=DeliveryStatus.PENDING,
            recipient=recipient,
            processed=False,
        )
        event_id = event.id
    message = build_email(smtp, recipient, subject, content)
    result = await _guarded(lambda: _smtp_send(smtp, message), smtp.timeout + 5)
    return await _finish(factory, event_id, staff, result, recipient)


# --- Telegram -----------------------------------------------------------------------


async def prepare_telegram_message(
    session: AsyncSession,
    client_id: int,
    staff: Staff,
    text: str,
    *,
    car_id: int | None = None,
) -> TelegramDraft:
    """Records a pending Telegram message to the client's linked chat and returns what the
    handler must send. The handler commits, sends, then calls :func:`record_delivery`."""
    _require(staff)
    body = _text(text, MAX_TELEGRAM)
    await _start(session)
    client = await _client(session, client_id)
    if client.telegram_chat_id is None:
        raise MessagingRefused(MessagingProblem.NOT_LINKED)
    await _check_car(session, client_id, car_id)
    event = await _add_event(
        session,
        client_id=client_id,
        car_id=car_id,
        staff=staff,
        kind=EventKind.TELEGRAM,
        direction=Direction.OUTGOING,
        text=body,
        delivery_status=DeliveryStatus.PENDING,
        recipient=str(client.telegram_chat_id),
        processed=False,
    )
    return TelegramDraft(event.id, client.telegram_chat_id, body)


async def record_delivery(
    session: AsyncSession,
    event_id: int,
    status: DeliveryStatus,
    *,
    error: str | None = None,
    provider_id: str | None = None,
    staff: Staff | None = None,
) -> Event:
    """Sets how a pending message ended (the Telegram message id as ``provider_id``)."""
    status = DeliveryStatus(status)
    await _start(session)
    event = await session.get(Event, event_id)
    if event is None:
        raise MessagingRefused(MessagingProblem.EVENT_NOT_FOUND, str(event_id))
    staff_id = staff.id if staff is not None else event.author_id
    await _set_delivery(
        session, event_id, SmsResult(status, provider_id, error), staff_id=staff_id
    )
    audit.record(
        session,
        "event.delivery",
        actor=staff,
        entity="event",
        entity_id=event_id,
        details={"status": status.value, "error": error},
    )
    await session.refresh(event)
    return event


# --- processing ---------------------------------------------------------------------


async def mark_processed(session: AsyncSession, event_id: int, staff: Staff) -> bool:
    """Marks the event processed by ``staff`` now; False (and nothing written) when it was
    processed already. One conditional UPDATE: two people pressing at once process it once."""
    _require(staff)
    await _start(session)
    now = _now()
    done = await session.execute(
        update(Event)
        .where(Event.id == event_id, Event.processed_at.is_(None))
        .values(processed_at=now, processed_by_id=staff.id)
        .returning(Event.client_id)
    )
    client_id = done.scalar_one_or_none()
    if client_id is None:
        if await session.get(Event, event_id) is None:
            raise MessagingRefused(MessagingProblem.EVENT_NOT_FOUND, str(event_id))
        return False
    audit.record(
        session,
        "event.processed",
        actor=staff,
        entity="event",
        entity_id=event_id,
        details={"client_id": client_id},
    )
    return True


async def mark_all_processed(session: AsyncSession, client_id: int, staff: Staff) -> int:
    """Marks every new event of the client processed by ``staff``; the number marked."""
    _require(staff)
    await _start(session)
    await _client(session, client_id)
    now = _now()
    done = await session.execute(
        update(Event)
        .where(Event.client_id == client_id, Event.processed_at.is_(None))
        .values(processed_at=now, processed_by_id=staff.id)
        .returning(Event.id)
    )
    ids = sorted(done.scalars())
    if ids:
        audit.record(
            session,
            "event.processed_all",
            actor=staff,
            entity="client",
            entity_id=client_id,
            details={"count": len(ids), "event_ids": ids[:100]},
        )
    return len(ids)


__all__ = [
    "CallOutcome",
    "DeliveryOutcome",
    "DeliveryStatus",
    "HttpSmsGateway",
    "MessagingProblem",
    "MessagingRefused",
    "RecordingSmsGateway",
    "SmsGateway",
    "SmsResult",
    "SmtpSettings",
    "TelegramDraft",
    "TlsMode",
    "build_email",
    "log_call",
    "log_manual_contact",
    "mark_all_processed",
    "mark_processed",
    "prepare_telegram_message",
    "record_delivery",
    "send_email",
    "send_sms",
]
