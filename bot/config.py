"""Settings from the environment and an optional ``.env`` file.

A wrong or missing setting ends the program with one clear line naming the variable
(exit code 2), see :func:`load_settings`.
"""

from __future__ import annotations

import re
import sys
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from services.bookings import BookingRules

DEFAULT_DB_PATH = Path("data") / "ccbot.sqlite3"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    bot_token: SecretStr | None = Field(default=None, description="Telegram bot token")
    database_url: str = Field(default=f"sqlite+aiosqlite:///{DEFAULT_DB_PATH}")
    telegram_api_url: str | None = Field(
        default=None, description="Base URL of a Bot API server (local server, tests)"
    )
    redis_url: str | None = None
    timezone: str = "Europe/Moscow"
    default_locale: Literal["ru", "en"] = "ru"
    default_region: str = Field(default="RU", description="Region for phones without +code")
    document_prefix: str = Field(default="ЦОА", min_length=1, max_length=5)
    # The seed's «Настройка полей поиска»: which fields each search box looks in.
    search_fields_client: str = "name,card"
    search_fields_contact: str = "phone,email,contact"
    search_fields_car: str = "plate,vin,body"
    log_level: str = "INFO"
    # The OEM catalogue (a Laximo-based site, say): a URL with {vin}; no button when unset.
    oem_catalogue_url: str | None = None
    # Telegram Payments: the provider token from @BotFather (payments off when unset).
    payments_provider_token: SecretStr | None = None
    # SMS to clients: an HTTP gateway (JSON POST, the key in a header); unset: SMS are only
    # recorded on the Events tab, nothing leaves the shop.
    sms_gateway_url: str | None = Field(default=None, pattern=r"^https?://")
    sms_api_key: SecretStr | None = None
    sms_sender: str | None = Field(default=None, max_length=20)
    # E-mail to clients over SMTP; unset SMTP_HOST: e-mail is off. The port defaults to the
    # TLS mode's (25 none, 587 starttls, 465 tls); SMTP_FROM defaults to SMTP_USER.
    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["none", "starttls", "tls"] = "starttls"
    smtp_from: str | None = Field(default=None, pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    # Notifications (the outbox worker): Telegram's limits, retries, quiet hours, alerts.
    # false: `ccbot run`/`webhook` leave notifications to a separate `ccbot worker`.
    notify_in_bot: bool = True
    notify_rate: float = Field(default=25.0, gt=0, le=30, description="messages per second")
    notify_chat_interval: float = Field(default=1.0, ge=0, description="seconds between two")
    notify_concurrency: int = Field(default=8, ge=1, le=64)
    notify_max_attempts: int = Field(default=8, ge=1, le=50)
    notify_backoff_cap: float = Field(default=600.0, gt=0)
    notify_lease: float = Field(default=60.0, ge=5)
    # Quiet hours (shop time): non-urgent messages to clients wait until the end.
    quiet_hours: str = Field(default="21:00-09:00", pattern=r"^(\d{1,2}:\d{2}-\d{1,2}:\d{2})?$")
    escalate_after_minutes: int = Field(default=60, ge=1)
    # When clients with stored tires are told to change them (month-day, shop time 10:00).
    tire_winter_reminder: str = Field(
        default="10-15", pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
    )
    tire_summer_reminder: str = Field(
        default="04-01", pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
    )
    # Repair booking (Запись на ремонт): the bays (posts) by name, the working day in shop
    # time, which weekdays (1 = Monday) are working, slot length, how far ahead to book.
    booking_bays: str = Field(default="Пост 1,Пост 2", min_length=1)
    booking_opens: time = time(9, 0)
    booking_closes: time = time(19, 0)
    booking_workdays: str = Field(default="1,2,3,4,5,6", pattern=r"^[1-7](,[1-7])*$")
    booking_slot_minutes: int = Field(default=60, ge=15, le=480)
    booking_days_ahead: int = Field(default=30, ge=1, le=365)
    # The hour (shop time) the scheduler queues tomorrow's booking reminders.
    booking_reminder_hour: int = Field(default=18, ge=0, le=23)
    # Webhook mode (`ccbot webhook`): where to listen, and what Telegram is told to post to.
    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(default=8080, ge=1, le=65535)
    webhook_path: str = Field(default="/telegram/webhook", pattern=r"^/")
    webhook_url: str | None = Field(
        default=None, pattern=r"^https?://", description="Public URL Telegram posts updates to"
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Checked on every webhook request (X-Telegram-Bot-Api-Secret-Token)",
    )

    @field_validator("booking_bays")
    @classmethod
    def _bay_names(cls, value: str) -> str:
        bays = [b.strip() for b in value.split(",")]
        if not all(bays) or any(len(b) > 40 for b in bays) or len(set(bays)) != len(bays):
            raise ValueError("a comma-separated list of distinct names, 1-40 characters each")
        return ",".join(bays)

    @model_validator(mode="after")
    def _booking_day(self) -> Settings:
        opens = self.booking_opens.hour * 60 + self.booking_opens.minute
        closes = self.booking_closes.hour * 60 + self.booking_closes.minute
        if closes - opens < self.booking_slot_minutes:
            raise ValueError("BOOKING_CLOSES must be at least one slot after BOOKING_OPENS")
        return self

    @field_validator("oem_catalogue_url")
    @classmethod
    def _oem_template(cls, value: str | None) -> str | None:
        if not value:
            return None
        from services.oem import BadOemTemplate, check_template

        try:
            return check_template(value)
        except BadOemTemplate as exc:
            raise ValueError(str(exc)) from None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("smtp_tls", mode="before")
    @classmethod
    def _lower_tls(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("webhook_secret")
    @classmethod
    def _telegram_secret(cls, value: SecretStr | None) -> SecretStr | None:
        secret = value.get_secret_value() if value is not None else None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ValueError("must be 1-256 characters: A-Z a-z 0-9 _ -")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        from services.outbox import parse_quiet_hours  # no aiogram: safe to import

        parse_quiet_hours(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("search_fields_client", "search_fields_contact", "search_fields_car")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        from services.normalize import SEARCH_FIELDS  # no aiogram, no DB: safe to import

        fields = [f.strip() for f in value.split(",") if f.strip()]
        unknown = sorted(set(fields) - set(SEARCH_FIELDS))
        if not fields or unknown:
            raise ValueError(f"unknown search fields {unknown}; known: {', '.join(SEARCH_FIELDS)}")
        return ",".join(fields)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def booking_rules(self) -> BookingRules:
        from services.bookings import BookingRules  # no aiogram: safe to import

        return BookingRules(
            bays=tuple(self.booking_bays.split(",")),
            opens=self.booking_opens,
            closes=self.booking_closes,
            workdays=frozenset(int(d) for d in self.booking_workdays.split(",")),
            slot_minutes=self.booking_slot_minutes,
            days_ahead=self.booking_days_ahead,
            timezone=self.timezone,
        )

    def search_boxes(self) -> dict[str, tuple[str, ...]]:
        return {
            "client": tuple(self.search_fields_client.split(",")),
            "contact": tuple(self.search_fields_contact.split(",")),
            "car": tuple(self.search_fields_car.split(",")),
        }

    def quiet_window(self) -> tuple[time, time] | None:
        from services.outbox import parse_quiet_hours

        return parse_quiet_hours(self.quiet_hours)

    def payments_secret(self) -> bytes:
        """The key that signs invoice payloads: derived from the bot token, never stored."""
        import hashlib

        return hashlib.sha256(b"ccbot-invoice-payload:" + self.require_token().encode()).digest()

    def require_token(self) -> str:
        if self.bot_token is None or not self.bot_token.get_secret_value().strip():
            raise SettingsError("BOT_TOKEN", "is not set")
        return self.bot_token.get_secret_value()


class SettingsError(Exception):
    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def load_settings(**overrides: object) -> Settings:
    """Read the settings; on a bad value raise :class:`SettingsError` naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        variable = str(err["loc"][0]).upper() if err["loc"] else "settings"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise SettingsError(variable, message) from None


def exit_on_settings_error(exc: SettingsError) -> None:
    print(f"ccbot: setting {exc.variable} {exc.problem}", file=sys.stderr)
    raise SystemExit(2)
