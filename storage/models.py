"""The data of the "Clients and cars" workstation.

Money is integer kopecks, quantities and norm hours are integer thousandths, discounts are
integer hundredths of a percent (basis points). Times are timezone-aware UTC.
A client's debt is never stored: it follows from documents and payments (see
``services.ledger``).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always returns them aware (SQLite drops tz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[enum.Enum], length: int = 24) -> Enum:
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


# PostgreSQL sorts search terms byte-wise so that ranges and prefixes use the B-tree.
TermString = String(200).with_variant(String(200, collation="C"), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


# --- enumerations -------------------------------------------------------------------


class Role(enum.StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    MASTER = "master"
    CASHIER = "cashier"


class ClientKind(enum.StrEnum):
    PERSON = "person"
    COMPANY = "company"


class ClientRelation(enum.StrEnum):
    BUYER = "buyer"
    SUPPLIER = "supplier"
    OTHER = "other"


class ContactKind(enum.StrEnum):
    MOBILE = "mobile"
    PHONE = "phone"
    EMAIL = "email"
    ADDRESS = "address"
    OTHER = "other"


class CarRole(enum.StrEnum):
    OWNER = "owner"
    DRIVER = "driver"


class EventKind(enum.StrEnum):
    CALL = "call"
    SMS = "sms"
    EMAIL = "email"
    TELEGRAM = "telegram"
    VISIT = "visit"
    NOTE = "note"


class Direction(enum.StrEnum):
    INCOMING = "in"
    OUTGOING = "out"


class DocType(enum.StrEnum):
    CUSTOMER_ORDER = "customer_order"
    WORK_ORDER = "work_order"
    REPAIR_REQUEST = "repair_request"
    REPAIR_PLAN = "repair_plan"
    INVOICE = "invoice"
    SALE = "sale"
    PAYMENT = "payment"


class DocState(enum.StrEnum):
    # customer orders
    OPEN = "open"
    # work orders: request -> in progress -> completed -> closed
    REQUEST = "request"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CLOSED = "closed"
    # any document
    POSTED = "posted"
    CANCELLED = "cancelled"


class LineKind(enum.StrEnum):
    GOODS = "goods"
    WORK = "work"


class PaymentMethod(enum.StrEnum):
    CASH_DESK = "cash_desk"
    CASH_RECEIPT = "cash_receipt"  # ПКО
    TELEGRAM = "telegram"


class BookingState(enum.StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"
    ARRIVED = "arrived"


# --- reference data -----------------------------------------------------------------


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    inn: Mapped[str | None] = mapped_column(String(12))

    departments: Mapped[list[Department]] = relationship(back_populates="organization")


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))

    organization: Mapped[Organization] = relationship(back_populates="departments")


class PriceType(Base):
    __tablename__ = "price_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))


class Warehouse(Base):
    __tablename__ = "warehouses"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role))
    locale: Mapped[str | None] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sql_text("true"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- clients and cars ---------------------------------------------------------------


class ClientMaster(Base):
    """The masters assigned to a client (the seed's «Мастера»)."""

    __tablename__ = "client_masters"

    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), primary_key=True, index=True)


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[ClientKind] = mapped_column(_enum(ClientKind), default=ClientKind.PERSON)
    relation: Mapped[ClientRelation] = mapped_column(
        _enum(ClientRelation), default=ClientRelation.BUYER
    )
    inn: Mapped[str | None] = mapped_column(String(12))
    main_phone: Mapped[str | None] = mapped_column(String(20))  # E.164 digits, no "+"
    price_type_id: Mapped[int | None] = mapped_column(ForeignKey("price_types.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    # Telegram answered 403 (the client blocked the bot or deleted the account): nothing
    # more is sent to the chat until the client writes again.
    telegram_blocked_at: Mapped[datetime | None] = mapped_column()
    # The client said /stop: no notifications. The history is in ``consents``.
    notifications_off: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sql_text("false")
    )
    # The language of the client's Telegram (ru, en): what notifications are written in.
    locale: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Ranking only (search results, lists): when anything last happened with the client.
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    contacts: Mapped[list[ContactInfo]] = relationship(
        back_populates="client", cascade="all, delete-orphan", order_by="ContactInfo.id"
    )
    cards: Mapped[list[DiscountCard]] = relationship(
        back_populates="client", order_by="DiscountCard.id"
    )
    price_type: Mapped[PriceType | None] = relationship()
    manager: Mapped[Staff | None] = relationship(foreign_keys=[manager_id])
    masters: Mapped[list[Staff]] = relationship(secondary="client_masters", viewonly=True)
    car_links: Mapped[list[ClientCar]] = relationship(
        back_populates="client", cascade="all, delete-orphan"
    )


class ContactInfo(Base):
    __tablename__ = "contact_info"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[ContactKind] = mapped_column(_enum(ContactKind))
    # Phones are stored as E.164 digits; other kinds as typed.
    value: Mapped[str] = mapped_column(String(300))
    comment: Mapped[str | None] = mapped_column(String(200))

    client: Mapped[Client] = relationship(back_populates="contacts")


class DiscountCard(Base):
    __tablename__ = "discount_cards"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    client_id: Mapped[int | None] = mapped_column(
        ForeignKey("clients.id", ondelete="SET NULL"), index=True
    )
    discount_bp: Mapped[int] = mapped_column(Integer, default=0)  # 500 = 5.00 %
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sql_text("true"))

    client: Mapped[Client | None] = relationship(back_populates="cards")


class Car(Base):
    __tablename__ = "cars"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # «Наименование»: make, model and body as 1C shows it.
    name: Mapped[str] = mapped_column(String(300))
    make: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[str | None] = mapped_column(String(200))
    configuration: Mapped[str | None] = mapped_column(String(200))
    vin: Mapped[str | None] = mapped_column(String(17))
    body_number: Mapped[str | None] = mapped_column(String(40))
    plate: Mapped[str | None] = mapped_column(String(20))
    year: Mapped[int | None] = mapped_column(Integer)
    mileage: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    client_links: Mapped[list[ClientCar]] = relationship(
        back_populates="car", cascade="all, delete-orphan"
    )


class ClientCar(Base):
    """A car belongs to one or more clients (owner, driver)."""

    __tablename__ = "client_cars"

    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    car_id: Mapped[int] = mapped_column(
        ForeignKey("cars.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[CarRole] = mapped_column(_enum(CarRole), default=CarRole.OWNER)

    client: Mapped[Client] = relationship(back_populates="car_links")
    car: Mapped[Car] = relationship(back_populates="client_links")


class SearchTerm(Base):
    """A searchable value of a client or car in canonical form (``services.normalize``).

    Indexed for substring search by a migration: FTS5 trigram on SQLite, pg_trgm GIN on
    PostgreSQL; the B-tree on ``term`` serves exact and prefix matches.
    """

    __tablename__ = "search_terms"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_type: Mapped[str] = mapped_column(String(6))  # "client" | "car"
    owner_id: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(8))
    term: Mapped[str] = mapped_column(TermString)

    __table_args__ = (
        Index("ix_search_terms_term", "term"),
        Index("ix_search_terms_owner", "owner_type", "owner_id"),
    )


# --- events -------------------------------------------------------------------------


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    car_id: Mapped[int | None] = mapped_column(ForeignKey("cars.id", ondelete="SET NULL"))
    kind: Mapped[EventKind] = mapped_column(_enum(EventKind))
    direction: Mapped[Direction] = mapped_column(_enum(Direction), default=Direction.OUTGOING)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    text: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str | None] = mapped_column(String(40))
    delivery_status: Mapped[str | None] = mapped_column(String(40))
    # Where a message went (E.164 digits, an e-mail address, a Telegram chat id): contacts
    # change, the log must still say which one was used.
    recipient: Mapped[str | None] = mapped_column(String(300))
    # Why a delivery failed (gateway or SMTP error), and the provider's message id.
    delivery_error: Mapped[str | None] = mapped_column(String(500))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    # The time a client asked to be called back (calls with the "call back" outcome).
    call_back_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column()
    processed_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))

    author: Mapped[Staff | None] = relationship(foreign_keys=[author_id])
    processed_by: Mapped[Staff | None] = relationship(foreign_keys=[processed_by_id])

    __table_args__ = (
        Index("ix_events_client_created", "client_id", "created_at"),
        # The "with new events" filter reads only unprocessed rows.
        Index(
            "ix_events_unprocessed",
            "client_id",
            sqlite_where=sql_text("processed_at IS NULL"),
            postgresql_where=sql_text("processed_at IS NULL"),
        ),
        # The escalation job reads the unprocessed ones by age, every minute.
        Index(
            "ix_events_unprocessed_created",
            "created_at",
            "id",
            sqlite_where=sql_text("processed_at IS NULL"),
            postgresql_where=sql_text("processed_at IS NULL"),
        ),
    )


# --- documents ----------------------------------------------------------------------


class Document(Base):
    """Every document of the client: orders, work orders, requests, plans, invoices,
    sales, payments. One table, so the «Документы покупателя» tab is one query."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    doc_type: Mapped[DocType] = mapped_column(_enum(DocType))
    number: Mapped[str] = mapped_column(String(20))
    date: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[DocState] = mapped_column(_enum(DocState))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    car_id: Mapped[int | None] = mapped_column(ForeignKey("cars.id"))
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    master_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    # The document this one was made on the basis of (invoice/sale from an order,
    # payment for an order).
    base_id: Mapped[int | None] = mapped_column(ForeignKey("documents.id"), index=True)
    repair_type: Mapped[str | None] = mapped_column(String(100))
    mileage: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    # Sum of the lines (payments: the amount paid), kopecks. Fixed when the document is
    # written; debts are computed from documents, never kept.
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    lines: Mapped[list[DocumentLine]] = relationship(
        back_populates="document", cascade="all, delete-orphan", order_by="DocumentLine.line_no"
    )
    payment: Mapped[Payment | None] = relationship(
        back_populates="document", cascade="all, delete-orphan", uselist=False
    )

    __table_args__ = (
        UniqueConstraint("doc_type", "number", name="uq_documents_type_number"),
        Index("ix_documents_client_type_state", "client_id", "doc_type", "state"),
        Index("ix_documents_car_date", "car_id", "date"),
        Index("ix_documents_client_date", "client_id", "date"),
        Index("ix_documents_type_state", "doc_type", "state"),
        Index("ix_documents_author", "author_id"),
        Index("ix_documents_manager", "manager_id"),
    )


class DocumentLine(Base):
    __tablename__ = "document_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    line_no: Mapped[int] = mapped_column(Integer)
    kind: Mapped[LineKind] = mapped_column(_enum(LineKind))
    item: Mapped[str] = mapped_column(String(300))
    catalogue_number: Mapped[str | None] = mapped_column(String(60))
    maker: Mapped[str | None] = mapped_column(String(100))
    qty_milli: Mapped[int] = mapped_column(Integer, default=1000)
    norm_hours_milli: Mapped[int | None] = mapped_column(Integer)
    price: Mapped[int] = mapped_column(BigInteger)  # per unit, or per norm-hour for works
    discount_bp: Mapped[int] = mapped_column(Integer, default=0)
    amount: Mapped[int] = mapped_column(BigInteger)
    shipped_qty_milli: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    document: Mapped[Document] = relationship(back_populates="lines")


class Reservation(Base):
    """Goods of a customer order reserved at a warehouse."""

    __tablename__ = "reservations"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    line_id: Mapped[int | None] = mapped_column(
        ForeignKey("document_lines.id", ondelete="CASCADE")
    )
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    qty_milli: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        Index(
            "ix_reservations_active",
            "client_id",
            sqlite_where=sql_text("released_at IS NULL"),
            postgresql_where=sql_text("released_at IS NULL"),
        ),
        Index("ix_reservations_document", "document_id"),
    )


class Payment(Base):
    """The payment details of a ``DocType.PAYMENT`` document."""

    __tablename__ = "payments"

    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    method: Mapped[PaymentMethod] = mapped_column(_enum(PaymentMethod))
    # Replays of the same request (double tap, replayed update) carry the same key.
    idempotency_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    telegram_charge_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    provider_charge_id: Mapped[str | None] = mapped_column(String(200))
    cashier_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))

    document: Mapped[Document] = relationship(back_populates="payment")


class DocCounter(Base):
    """The last number given per document type and prefix (``ЦОА0000001``)."""

    __tablename__ = "doc_counters"

    doc_type: Mapped[str] = mapped_column(String(24), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(5), primary_key=True)
    last_value: Mapped[int] = mapped_column(BigInteger, default=0)


class Booking(Base):
    """A repair booking (Запись на ремонт): a time on a bay."""

    __tablename__ = "bookings"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    car_id: Mapped[int | None] = mapped_column(ForeignKey("cars.id"))
    bay: Mapped[str] = mapped_column(String(40))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)
    state: Mapped[BookingState] = mapped_column(_enum(BookingState), default=BookingState.ACTIVE)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_bookings_starts_at", "starts_at"),)


class Selection(Base):
    """Selection history (История подборов): parts and works picked for a car."""

    __tablename__ = "selections"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"), index=True)
    car_id: Mapped[int | None] = mapped_column(ForeignKey("cars.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    kind: Mapped[LineKind] = mapped_column(_enum(LineKind))
    item: Mapped[str] = mapped_column(String(300))
    catalogue_number: Mapped[str | None] = mapped_column(String(60))
    maker: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(40))  # price_list, oem, repair_plan, ...
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditLog(Base):
    """Every change to client data and every payment; also refused button presses."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    actor_telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(60))
    entity: Mapped[str | None] = mapped_column(String(40))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)


class InviteKind(enum.StrEnum):
    STAFF = "staff"
    CLIENT = "client"


class Invite(Base):
    """A one-time, expiring deep link (``t.me/<bot>?start=<token>``): a staff member with a
    role, or a client's chat. Only the token's SHA-256 is kept."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[InviteKind] = mapped_column(_enum(InviteKind))
    role: Mapped[Role | None] = mapped_column(_enum(Role))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    used_by_telegram_id: Mapped[int | None] = mapped_column(BigInteger)


# --- notifications ------------------------------------------------------------------


class NotificationState(enum.StrEnum):
    PENDING = "pending"  # waiting for its time (``not_before``)
    SENDING = "sending"  # claimed by a worker until ``lease_until``
    SENT = "sent"  # ``message_id`` is Telegram's
    DEAD = "dead"  # gave up after retries; an admin was told
    DROPPED = "dropped"  # not to be sent: opted out, unreachable, no chat, out of date


class Notification(Base):
    """The transactional outbox: a row written in the same transaction as the change that
    causes it, delivered by the worker. ``key`` (what, which record, which version) makes
    queueing the same thing twice a no-op."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    # The recipient: a client's chat, a staff member, or (rarely) a bare chat id. The chat
    # is resolved when sending, so a chat linked or migrated after queueing still counts.
    client_id: Mapped[int | None] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    staff_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff.id", ondelete="CASCADE"), index=True
    )
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Urgent messages ignore the client's quiet hours.
    urgent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sql_text("false"))
    # Several digestible messages for one chat go out as one digest.
    digestible: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sql_text("false")
    )
    state: Mapped[NotificationState] = mapped_column(
        _enum(NotificationState), default=NotificationState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (Index("ix_notifications_due", "state", "not_before"),)


class Consent(Base):
    """What a client agreed to, and when: every /start and /stop, with the text's version."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    granted: Mapped[bool] = mapped_column(Boolean)
    text_version: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(20))  # telegram, ...
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_consents_client_at", "client_id", "at"),)


class LinkRequestState(enum.StrEnum):
    PENDING = "pending"
    LINKED = "linked"
    REJECTED = "rejected"


class LinkRequest(Base):
    """A shared phone that matched several clients: a manager decides which one, if any."""

    __tablename__ = "link_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    telegram_user_id: Mapped[int] = mapped_column(BigInteger)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    phone: Mapped[str] = mapped_column(String(20))  # E.164 digits
    name: Mapped[str | None] = mapped_column(String(300))  # as Telegram gave it
    state: Mapped[LinkRequestState] = mapped_column(
        _enum(LinkRequestState), default=LinkRequestState.PENDING
    )
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column()
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))

    __table_args__ = (Index("ix_link_requests_state", "state"),)


# --- the price list, the cart, estimates --------------------------------------------


class PriceItem(Base):
    """A line of the shop's price list (прайс-лист): goods or a work. A work is priced per
    norm-hour and carries its norm hours; goods per unit. Prices per price type are in
    ``price_item_prices``."""

    __tablename__ = "price_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[LineKind] = mapped_column(_enum(LineKind))
    name: Mapped[str] = mapped_column(String(300))
    # ``services.normalize.normalize_name`` of the name: searched by fragment.
    name_key: Mapped[str] = mapped_column(String(300))
    catalogue_number: Mapped[str | None] = mapped_column(String(60))
    # ``normalize_code`` of the catalogue number (article of a work): "W 712/75" = "W71275".
    catalogue_key: Mapped[str | None] = mapped_column(String(60), index=True)
    maker: Mapped[str | None] = mapped_column(String(100))
    unit: Mapped[str] = mapped_column(String(20), default="шт")
    norm_hours_milli: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sql_text("true"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    prices: Mapped[list[PriceItemPrice]] = relationship(
        back_populates="item", cascade="all, delete-orphan"
    )


class PriceItemPrice(Base):
    """The price of an item for a price type: kopecks per unit, or per norm-hour (works)."""

    __tablename__ = "price_item_prices"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("price_items.id", ondelete="CASCADE"), primary_key=True
    )
    price_type_id: Mapped[int] = mapped_column(
        ForeignKey("price_types.id", ondelete="CASCADE"), primary_key=True
    )
    price: Mapped[int] = mapped_column(BigInteger)

    item: Mapped[PriceItem] = relationship(back_populates="prices")


class CartLine(Base):
    """A line of a client's cart (Корзина), for one of the client's cars or none. The price
    is not kept for price-list lines: it follows the client's price type and discount card
    when the cart is shown or turned into a document. Lines picked from a repair plan keep
    the plan's price unless the price list has the item."""

    __tablename__ = "cart_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    car_id: Mapped[int | None] = mapped_column(ForeignKey("cars.id", ondelete="CASCADE"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    source: Mapped[str] = mapped_column(String(20))  # price_list | repair_plan
    price_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("price_items.id", ondelete="SET NULL")
    )
    plan_line_id: Mapped[int | None] = mapped_column(
        ForeignKey("document_lines.id", ondelete="SET NULL")
    )
    kind: Mapped[LineKind] = mapped_column(_enum(LineKind))
    item: Mapped[str] = mapped_column(String(300))
    catalogue_number: Mapped[str | None] = mapped_column(String(60))
    maker: Mapped[str | None] = mapped_column(String(100))
    qty_milli: Mapped[int] = mapped_column(Integer, default=1000)
    norm_hours_milli: Mapped[int | None] = mapped_column(Integer)
    plan_price: Mapped[int | None] = mapped_column(BigInteger)  # the plan's, kopecks
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EstimateState(enum.StrEnum):
    DRAFT = "draft"  # being made; the current version was not sent
    SENT = "sent"  # the current version waits for the client
    DECIDED = "decided"  # the client decided every line of the current version


class LineDecision(enum.StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"


class Estimate(Base):
    """An estimate (Калькуляция) for a client and car. ``version`` is the current one; a
    change after sending makes a new version (its lines are copied), so every decision
    stays with the version the client saw."""

    __tablename__ = "estimates"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    car_id: Mapped[int | None] = mapped_column(ForeignKey("cars.id", ondelete="SET NULL"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[EstimateState] = mapped_column(_enum(EstimateState), default=EstimateState.DRAFT)
    sent_at: Mapped[datetime | None] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column()
    # Who decided: the client's Telegram chat at the time.
    decided_by_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    # The repair plan the declined lines went to, the work order the approved ones made.
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("documents.id", ondelete="SET NULL"))
    work_order_id: Mapped[int | None] = mapped_column(
        ForeignKey("documents.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EstimateLine(Base):
    """A line of one version of an estimate, priced when the version was made, and the
    client's decision on it."""

    __tablename__ = "estimate_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    estimate_id: Mapped[int] = mapped_column(ForeignKey("estimates.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    line_no: Mapped[int] = mapped_column(Integer)
    kind: Mapped[LineKind] = mapped_column(_enum(LineKind))
    item: Mapped[str] = mapped_column(String(300))
    catalogue_number: Mapped[str | None] = mapped_column(String(60))
    maker: Mapped[str | None] = mapped_column(String(100))
    qty_milli: Mapped[int] = mapped_column(Integer)
    norm_hours_milli: Mapped[int | None] = mapped_column(Integer)
    price: Mapped[int] = mapped_column(BigInteger)
    discount_bp: Mapped[int] = mapped_column(Integer, default=0)
    amount: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(20))  # price_list | repair_plan
    plan_line_id: Mapped[int | None] = mapped_column(
        ForeignKey("document_lines.id", ondelete="SET NULL")
    )
    decision: Mapped[LineDecision | None] = mapped_column(_enum(LineDecision))
    decided_at: Mapped[datetime | None] = mapped_column()
    decided_by_chat_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_estimate_lines_version", "estimate_id", "version", "line_no"),)


# --- tire hotel ---------------------------------------------------------------------


class TireSeason(enum.StrEnum):
    SUMMER = "summer"
    WINTER = "winter"
    ALL_SEASON = "all_season"


class TireSetState(enum.StrEnum):
    STORED = "stored"
    ISSUED = "issued"


class TireSet(Base):
    """A client's set stored in the tire hotel (Шинный отель): what it is, where it lies,
    when it came and goes back. The fee is kopecks, the tread depth tenths of a millimetre."""

    __tablename__ = "tire_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    car_id: Mapped[int | None] = mapped_column(ForeignKey("cars.id"), index=True)
    size: Mapped[str] = mapped_column(String(40))  # "205/55 R16"
    brand: Mapped[str | None] = mapped_column(String(100))
    season: Mapped[TireSeason] = mapped_column(_enum(TireSeason))
    count: Mapped[int] = mapped_column(Integer)
    with_wheels: Mapped[bool] = mapped_column(Boolean)  # wheels (on rims) or tires only
    tread_tenths_mm: Mapped[int | None] = mapped_column(Integer)  # 65 = 6.5 mm
    condition: Mapped[str | None] = mapped_column(Text)
    rack: Mapped[str] = mapped_column(String(20))
    shelf: Mapped[str] = mapped_column(String(20))
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[TireSetState] = mapped_column(_enum(TireSetState), default=TireSetState.STORED)
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
    planned_issue_at: Mapped[datetime | None] = mapped_column()
    issued_at: Mapped[datetime | None] = mapped_column()
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))

    __table_args__ = (
        Index("ix_tire_sets_place", "rack", "shelf"),
        Index("ix_tire_sets_state_season", "state", "season"),
    )
