"""Repair booking (Запись на ремонт) and car arrival (Машинозаезд), opened from the client
and car cards in their context.

Booking: the client's bookings → a day (inline date picker, working days only) → a free
slot on a bay → the reason (typed, or none) → booked; a booking can be moved (the same
picker) or cancelled (asked first). Two managers taking one slot at once: the second is
told it was just taken and sees the day's slots again.

Arrival: the car card's button (or the booking's) → the mileage (a lower one than last
recorded is asked to confirm) → the complaint → the master → the work order in progress.

Rules in ``services.bookings`` and ``services.arrivals``; the renderers of the booking
notifications are at the end. Every press re-checks the role and re-reads the object;
a forged or stale one is refused and audited (``handlers.navigation.refuse``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from babel.dates import format_date
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import IsStaff, Magic, dialogs, fmt, navigation
from handlers.alerts import AlertContext, Rendered, renders
from handlers.callbacks import (
    ArrivalMaster,
    ArrivalStart,
    ArrivalStep,
    BookingCancel,
    BookingDays,
    BookingList,
    BookingOpen,
    BookingPick,
    BookingSave,
    BookingSlots,
    OpenCar,
    OpenClient,
)
from handlers.fmt import q
from handlers.reach import client_told
from handlers.screens import Screen, keyboard
from services import arrivals, bookings, cards
from services.access import Permission, can
from services.arrivals import ArrivalProblem, ArrivalRefused
from services.bookings import BookingProblem, BookingRefused, BookingRules
from services.outbox import Kind
from storage.models import Booking, BookingState, Car, Client, Notification, Staff, utcnow

DAYS_PER_PAGE = 14
MAX_MASTERS = 30
BOOKING, ARRIVAL = "booking", "arrival"


class BookingDialog(StatesGroup):
    reason = State()


class ArrivalDialog(StatesGroup):
    mileage = State()
    complaint = State()
    master = State()


def make_router() -> Router:
    router = Router(name="booking")
    router.message.filter(IsStaff())
    router.callback_query.filter(IsStaff())
    router.callback_query.register(on_list, BookingList.filter())
    router.callback_query.register(on_days, BookingDays.filter())
    router.callback_query.register(on_slots, BookingSlots.filter())
    router.callback_query.register(on_pick, BookingPick.filter())
    router.callback_query.register(on_save, BookingSave.filter())
    router.callback_query.register(on_open, BookingOpen.filter())
    router.callback_query.register(on_cancel, BookingCancel.filter())
    router.callback_query.register(on_arrival, ArrivalStart.filter())
    router.callback_query.register(on_arrival_step, ArrivalStep.filter())
    router.callback_query.register(on_master, ArrivalMaster.filter())
    router.message.register(
        on_reason, StateFilter(BookingDialog.reason), Magic(F.text), dialogs.not_a_command
    )
    router.message.register(
        on_mileage, StateFilter(ArrivalDialog.mileage), Magic(F.text), dialogs.not_a_command
    )
    router.message.register(
        on_complaint, StateFilter(ArrivalDialog.complaint), Magic(F.text), dialogs.not_a_command
    )
    return router


# --- shared -------------------------------------------------------------------------------


async def _allowed(
    callback: CallbackQuery, session: AsyncSession, staff: Staff, permission: Permission
) -> bool:
    if can(staff, permission):
        return True
    await navigation.refuse(callback, session, staff, reason="forbidden", detail=permission.value)
    return False


async def _stale(callback: CallbackQuery, session: AsyncSession, staff: Staff, what: str) -> None:
    await navigation.refuse(callback, session, staff, reason="stale", detail=what)


async def _end_read(session: AsyncSession) -> None:
    """End the read transaction before a service writes: on SQLite the write must begin
    with the lock (``BEGIN IMMEDIATE``), which a transaction that has read cannot take."""
    await session.commit()


async def _undo(session: AsyncSession, staff: Staff) -> None:
    await session.rollback()
    await session.refresh(staff)


def bay_name(bay: str) -> str:
    """A bay as BOOKING_BAYS names it ("Пост 1")."""
    return q(bay)


def _day_label(day: date) -> str:
    pattern = "EEE dd.MM" if fmt.locale() == "ru" else "EEE d MMM"
    return format_date(day, pattern, locale=fmt.locale())


def _slot_text(starts_at: datetime, bay: str, tz: ZoneInfo) -> str:
    return f"{fmt.when(starts_at, tz)} · {bay_name(bay)}"


def booking_problem(problem: BookingProblem) -> str:
    return {
        BookingProblem.TAKEN: _("This time was just taken by another booking. Pick another one."),
        BookingProblem.PAST: _("This time has passed already."),
        BookingProblem.DAY_OFF: _("The shop does not work that day."),
        BookingProblem.OUTSIDE_HOURS: _("That is outside the working hours."),
        BookingProblem.TOO_FAR: _("That is too far ahead to book."),
        BookingProblem.TOO_LONG: _("That is too long: {limit} characters at most.").format(
            limit=bookings.MAX_REASON
        ),
        BookingProblem.NOT_ACTIVE: _("The booking is cancelled or the car has arrived."),
    }.get(problem, _("The booking was refused ({reason}).").format(reason=problem.value))


async def _client(session: AsyncSession, client_id: int) -> Client | None:
    return await session.get(Client, client_id, populate_existing=True)


async def _car_of(session: AsyncSession, client_id: int, car_id: int) -> bool:
    """``car_id`` 0 (no car), or a car of the client."""
    if not car_id:
        return True
    card = await cards.client_card(session, client_id)
    return card is not None and any(c.id == car_id for c in card.cars)


# --- the client's bookings ---------------------------------------------------------------


async def bookings_screen(
    session: AsyncSession, client: Client, settings: Settings, note: str = ""
) -> Screen:
    tz = settings.tz
    rows = await bookings.upcoming(session, client.id, utcnow())
    lines = [note, ""] if note else []
    lines += [f"📅 <b>{q(client.name)}</b>", "<b>" + _("Repair bookings") + "</b>"]
    buttons: list[list[tuple[str, CallbackData]]] = []
    for b in rows:
        car = await bookings.car_label(session, b.car_id)
        reason = f" · {q(b.reason)}" if b.reason else ""
        lines.append(f"• {_slot_text(b.starts_at, b.bay, tz)} · {q(car)}{reason}")
        label = f"{fmt.when(b.starts_at, tz)} · {b.bay}"
        buttons.append([(fmt.cut("📅 " + label, 60), BookingOpen(booking_id=b.id))])
    if not rows:
        lines.append(_("No bookings ahead."))
    card = await cards.client_card(session, client.id)
    for own in (card.cars if card else ())[:8]:
        code = own.plate or own.vin or own.body_number or own.name
        buttons.append(
            [
                (
                    fmt.cut(_("➕ Book {car}").format(car=code), 60),
                    BookingDays(client_id=client.id, car_id=own.id),
                )
            ]
        )
    if not card or not card.cars:
        buttons.append([(_("➕ New booking"), BookingDays(client_id=client.id))])
    buttons.append([(_("« Back"), OpenClient(client_id=client.id))])
    return Screen("\n".join(lines), keyboard(*buttons))


async def on_list(
    callback: CallbackQuery,
    callback_data: BookingList,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    if not await _allowed(callback, session, staff, Permission.BOOKINGS):
        return
    client = await _client(session, callback_data.client_id)
    if client is None:
        await _stale(callback, session, staff, "client")
        return
    await dialogs.end(state)
    await callback.answer()
    await navigation.show(callback, await bookings_screen(session, client, settings))


# --- the day picker and the slots ------------------------------------------------------------


async def _context(
    callback: CallbackQuery,
    session: AsyncSession,
    staff: Staff,
    client_id: int,
    car_id: int,
    booking_id: int,
) -> tuple[Client, Booking | None] | None:
    """Re-read what a picker press is about; refuse (and None) when it is gone."""
    if not await _allowed(callback, session, staff, Permission.BOOKINGS):
        return None
    client = await _client(session, client_id)
    if client is None or not await _car_of(session, client_id, car_id):
        await _stale(callback, session, staff, "client")
        return None
    booking = None
    if booking_id:
        booking = await session.get(Booking, booking_id, populate_existing=True)
        if (
            booking is None
            or booking.client_id != client_id
            or BookingState(booking.state) is not BookingState.ACTIVE
        ):
            await _stale(callback, session, staff, "booking")
            return None
    return client, booking


def days_screen(
    client: Client, cb: BookingDays, rules: BookingRules, now: datetime, booking: Booking | None
) -> Screen | None:
    days = rules.bookable_days(now)
    pages = max(1, -(-len(days) // DAYS_PER_PAGE))
    if not 0 <= cb.page < pages:
        return None
    shown = days[cb.page * DAYS_PER_PAGE : (cb.page + 1) * DAYS_PER_PAGE]
    head = f"📅 <b>{q(client.name)}</b>"
    if booking is not None:
        title = _("Move the booking of {when}: pick a day.").format(
            when=_slot_text(booking.starts_at, booking.bay, rules.tz)
        )
    else:
        title = _("New booking: pick a day.")
    day_buttons: list[tuple[str, CallbackData]] = [
        (
            _day_label(d),
            BookingSlots(
                client_id=client.id,
                day=d.toordinal(),
                car_id=cb.car_id,
                booking_id=cb.booking_id,
            ),
        )
        for d in shown
    ]
    rows: list[list[tuple[str, CallbackData]]] = [
        day_buttons[i : i + 3] for i in range(0, len(day_buttons), 3)
    ]
    turn: list[tuple[str, CallbackData]] = []
    if cb.page > 0:
        turn.append(("«", BookingDays.model_validate({**cb.model_dump(), "page": cb.page - 1})))
    if cb.page + 1 < pages:
        turn.append(("»", BookingDays.model_validate({**cb.model_dump(), "page": cb.page + 1})))
    rows.append(turn)
    back: CallbackData = (
        BookingOpen(booking_id=booking.id) if booking else BookingList(client_id=client.id)
    )
    rows.append([(_("« Back"), back)])
    text = f"{head}\n{title}"
    if not days:
        text += "\n" + _("No working days to book ahead.")
    return Screen(text, keyboard(*rows))


async def on_days(
    callback: CallbackQuery,
    callback_data: BookingDays,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    cb = callback_data
    found = await _context(callback, session, staff, cb.client_id, cb.car_id, cb.booking_id)
    if found is None:
        return
    screen = days_screen(found[0], cb, settings.booking_rules(), utcnow(), found[1])
    if screen is None:
        await _stale(callback, session, staff, "page")
        return
    await dialogs.end(state)
    await callback.answer()
    await navigation.show(callback, screen)


async def slots_screen(
    session: AsyncSession,
    client: Client,
    cb: BookingSlots,
    rules: BookingRules,
    now: datetime,
    note: str = "",
) -> Screen | None:
    """The day's free slots, a row per time with a button per free bay; None when the day
    cannot be booked (past, day off, too far)."""
    day = date.fromordinal(cb.day)
    if day not in rules.bookable_days(now):
        return None
    slots = await bookings.day_slots(session, rules, day, now)
    lines = [note, ""] if note else []
    lines += [
        f"📅 <b>{q(client.name)}</b>",
        _("{day}: pick a time and a bay.").format(day=_day_label(day)),
    ]
    rows: list[list[tuple[str, CallbackData]]] = []
    for slot in slots:
        clock = slot.starts_at.astimezone(rules.tz).strftime("%H:%M")
        rows.append(
            [
                (
                    f"{clock} · {bay}",
                    BookingPick(
                        client_id=client.id,
                        day=cb.day,
                        minute=slot.minute,
                        bay=rules.bays.index(bay),
                        car_id=cb.car_id,
                        booking_id=cb.booking_id,
                    ),
                )
                for bay in slot.free_bays
            ]
        )
    if not any(rows):
        lines.append(_("No free time that day."))
    rows.append(
        [
            (
                _("« Other day"),
                BookingDays(client_id=client.id, car_id=cb.car_id, booking_id=cb.booking_id),
            )
        ]
    )
    return Screen("\n".join(lines), keyboard(*rows))


async def on_slots(
    callback: CallbackQuery,
    callback_data: BookingSlots,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    cb = callback_data
    found = await _context(callback, session, staff, cb.client_id, cb.car_id, cb.booking_id)
    if found is None:
        return
    try:
        screen = await slots_screen(session, found[0], cb, settings.booking_rules(), utcnow())
    except (ValueError, OverflowError):  # a forged day number
        screen = None
    if screen is None:
        await _stale(callback, session, staff, "day")
        return
    await dialogs.end(state)
    await callback.answer()
    await navigation.show(callback, screen)


def _pick_slot(cb: BookingPick, rules: BookingRules) -> tuple[date, str] | None:
    if not 0 <= cb.bay < len(rules.bays):
        return None
    try:
        return date.fromordinal(cb.day), rules.bays[cb.bay]
    except (ValueError, OverflowError):
        return None


async def on_pick(
    callback: CallbackQuery,
    callback_data: BookingPick,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    cb = callback_data
    found = await _context(callback, session, staff, cb.client_id, cb.car_id, cb.booking_id)
    if found is None:
        return
    client, booking = found
    rules = settings.booking_rules()
    picked = _pick_slot(cb, rules)
    if picked is None:
        await navigation.refuse(callback, session, staff, reason="malformed", detail="slot")
        return
    day, bay = picked
    try:
        starts, _ends = rules.check(day, cb.minute, bay, utcnow())
    except BookingRefused as exc:  # a slot the picker never offered, or one gone by
        await navigation.refuse(callback, session, staff, reason="stale", detail=exc.problem)
        return
    if booking is not None:
        await _end_read(session)
        try:
            await bookings.move(
                session, rules, booking.id, day=day, minute=cb.minute, bay=bay, actor=staff
            )
        except BookingRefused as exc:
            await _undo(session, staff)
            await _refused_slot(callback, session, staff, client, cb, rules, exc)
            return
        await session.commit()
        note = _("✅ Moved to {when}.").format(when=_slot_text(starts, bay, rules.tz))
        note += " " + await client_told(session, client.id)
        await callback.answer(fmt.plain(note))
        await _show_booking(callback, session, settings, booking.id, note)
        return
    dialog = await dialogs.begin(
        state,
        BookingDialog.reason,
        BOOKING,
        callback,
        client_id=client.id,
        car_id=cb.car_id,
        day=cb.day,
        minute=cb.minute,
        bay=bay,
    )
    await callback.answer()
    await navigation.show(callback, _reason_prompt(client, dialog, rules))


def _reason_prompt(client: Client, dialog: dict[str, object], rules: BookingRules) -> Screen:
    starts, _ends = rules.span(
        date.fromordinal(int(str(dialog["day"]))), int(str(dialog["minute"]))
    )
    text = "\n".join(
        [
            f"📅 <b>{q(client.name)}</b>",
            _("Booking: {when}.").format(when=_slot_text(starts, str(dialog["bay"]), rules.tz)),
            _("Send the reason (for example: oil change), or book without one."),
        ]
    )
    return Screen(
        text,
        keyboard(
            [(_("Book without a reason"), BookingSave(client_id=client.id))],
            [(_("Cancel"), BookingList(client_id=client.id))],
        ),
    )


async def _refused_slot(
    callback: CallbackQuery,
    session: AsyncSession,
    staff: Staff,
    client: Client,
    cb: BookingPick,
    rules: BookingRules,
    exc: BookingRefused,
) -> None:
    if exc.problem in (BookingProblem.NOT_FOUND, BookingProblem.NOT_ACTIVE):
        await _stale(callback, session, staff, "booking")
        return
    problem = booking_problem(exc.problem)
    await callback.answer(fmt.plain(problem), show_alert=True)
    again = BookingSlots(
        client_id=client.id, day=cb.day, car_id=cb.car_id, booking_id=cb.booking_id
    )
    screen = await slots_screen(session, client, again, rules, utcnow(), note="⚠️ " + problem)
    if screen is not None:
        await navigation.show(callback, screen)


async def _make(
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    dialog: dict[str, object],
    reason: str | None,
) -> Booking:
    return await bookings.book(
        session,
        settings.booking_rules(),
        client_id=int(str(dialog["client_id"])),
        car_id=int(str(dialog["car_id"])) or None,
        day=date.fromordinal(int(str(dialog["day"]))),
        minute=int(str(dialog["minute"])),
        bay=str(dialog["bay"]),
        reason=reason,
        actor=staff,
    )


async def _booked_note(session: AsyncSession, booking: Booking, tz: ZoneInfo) -> str:
    note = _("✅ Booked: {when}.").format(when=_slot_text(booking.starts_at, booking.bay, tz))
    return note + " " + await client_told(session, booking.client_id)


async def on_save(
    callback: CallbackQuery,
    callback_data: BookingSave,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    if not await _allowed(callback, session, staff, Permission.BOOKINGS):
        return
    dialog = await dialogs.current(state, BOOKING)
    if dialog is None or dialog.get("client_id") != callback_data.client_id:
        await _stale(callback, session, staff, "dialog")
        return
    await dialogs.end(state)
    try:
        booking = await _make(session, staff, settings, dialog, None)
    except BookingRefused as exc:
        await _undo(session, staff)
        client = await _client(session, callback_data.client_id)
        if client is None:
            await _stale(callback, session, staff, "client")
            return
        cb = BookingPick(
            client_id=client.id,
            day=int(str(dialog["day"])),
            minute=int(str(dialog["minute"])),
            bay=0,
            car_id=int(str(dialog["car_id"])),
        )
        await _refused_slot(callback, session, staff, client, cb, settings.booking_rules(), exc)
        return
    await session.commit()
    note = await _booked_note(session, booking, settings.tz)
    await callback.answer(fmt.plain(note))
    await _show_booking(callback, session, settings, booking.id, note)


async def on_reason(
    message: Message, session: AsyncSession, staff: Staff, settings: Settings, state: FSMContext
) -> None:
    dialog = await dialogs.live(state, BOOKING)
    rules = settings.booking_rules()
    client = await _client(session, int(dialog["client_id"]))
    if client is None:
        await dialogs.end(state)
        await message.answer(_("This client is gone."))
        return
    await _end_read(session)
    try:
        booking = await _make(session, staff, settings, dialog, message.text)
    except BookingRefused as exc:
        await _undo(session, staff)
        problem = booking_problem(exc.problem)
        if exc.problem is BookingProblem.TOO_LONG:
            prompt = _reason_prompt(client, dialog, rules)
            await dialogs.reprompt(
                message, state, dialog, Screen(f"{problem}\n{prompt.text}", prompt.markup)
            )
            return
        await dialogs.end(state)
        await dialogs.retire(message.bot, message.chat.id, dialog.get("msg"))
        again = BookingSlots(client_id=client.id, day=dialog["day"], car_id=dialog["car_id"])
        screen = await slots_screen(session, client, again, rules, utcnow(), "⚠️ " + problem)
        if screen is None:
            screen = await bookings_screen(session, client, settings, "⚠️ " + problem)
        await message.answer(screen.text, reply_markup=screen.markup)
        return
    await session.commit()
    await dialogs.end(state)
    await dialogs.retire(message.bot, message.chat.id, dialog.get("msg"))
    note = await _booked_note(session, booking, rules.tz)
    screen = await booking_screen(session, settings, booking.id, note)
    if screen is not None:
        await message.answer(screen.text, reply_markup=screen.markup)


# --- one booking: move, cancel, arrival ---------------------------------------------------


async def booking_screen(
    session: AsyncSession,
    settings: Settings,
    booking_id: int,
    note: str = "",
    *,
    staff: Staff | None = None,
) -> Screen | None:
    booking = await session.get(Booking, booking_id, populate_existing=True)
    if booking is None:
        return None
    client = await _client(session, booking.client_id)
    if client is None:
        return None
    tz = settings.tz
    state = BookingState(booking.state)
    states = {
        BookingState.ACTIVE: _("booked"),
        BookingState.CANCELLED: _("cancelled"),
        BookingState.ARRIVED: _("arrived"),
    }
    lines = [note, ""] if note else []
    lines += [
        f"📅 <b>{q(client.name)}</b>",
        _("When: {when}").format(when=fmt.when(booking.starts_at, tz)),
        _("Bay: {bay}").format(bay=q(booking.bay)),
        _("Car: {car}").format(car=q(await bookings.car_label(session, booking.car_id))),
        _("Reason: {reason}").format(reason=q(booking.reason)),
        _("State: {state}").format(state=states[state]),
    ]
    rows: list[list[tuple[str, CallbackData]]] = []
    if state is BookingState.ACTIVE:
        rows.append(
            [
                (
                    _("Move"),
                    BookingDays(
                        client_id=client.id, car_id=booking.car_id or 0, booking_id=booking.id
                    ),
                ),
                (_("Cancel booking"), BookingCancel(booking_id=booking.id)),
            ]
        )
        if booking.car_id and (staff is None or can(staff, Permission.ARRIVAL)):
            rows.append(
                [
                    (
                        _("🔧 Car arrived"),
                        ArrivalStart(car_id=booking.car_id, booking_id=booking.id),
                    )
                ]
            )
    rows.append([(_("« Bookings"), BookingList(client_id=client.id))])
    return Screen("\n".join(lines), keyboard(*rows))


async def _show_booking(
    callback: CallbackQuery, session: AsyncSession, settings: Settings, booking_id: int, note: str
) -> None:
    screen = await booking_screen(session, settings, booking_id, note)
    await navigation.show(callback, screen or Screen(note))


async def on_open(
    callback: CallbackQuery,
    callback_data: BookingOpen,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    if not await _allowed(callback, session, staff, Permission.BOOKINGS):
        return
    screen = await booking_screen(session, settings, callback_data.booking_id, staff=staff)
    if screen is None:
        await _stale(callback, session, staff, "booking")
        return
    await dialogs.end(state)
    await callback.answer()
    await navigation.show(callback, screen)


async def on_cancel(
    callback: CallbackQuery,
    callback_data: BookingCancel,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
) -> None:
    if not await _allowed(callback, session, staff, Permission.BOOKINGS):
        return
    booking = await session.get(Booking, callback_data.booking_id, populate_existing=True)
    if booking is None or BookingState(booking.state) is not BookingState.ACTIVE:
        await _stale(callback, session, staff, "booking")
        return
    if not callback_data.sure:
        text = _("Cancel the booking of {when}?").format(
            when=_slot_text(booking.starts_at, booking.bay, settings.tz)
        )
        text += " " + await client_told(session, booking.client_id, ahead=True)
        await callback.answer()
        await navigation.show(
            callback,
            Screen(
                text,
                keyboard(
                    [
                        (_("Yes, cancel it"), BookingCancel(booking_id=booking.id, sure=True)),
                        (_("No"), BookingOpen(booking_id=booking.id)),
                    ]
                ),
            ),
        )
        return
    client_id = booking.client_id
    await _end_read(session)
    try:
        await bookings.cancel(session, booking.id, actor=staff, tz=settings.timezone)
    except BookingRefused:
        await _undo(session, staff)
        await _stale(callback, session, staff, "booking")
        return
    await session.commit()
    note = _("🗑 The booking is cancelled.") + " " + await client_told(session, client_id)
    await callback.answer(fmt.plain(note))
    client = await _client(session, client_id)
    if client is not None:
        await navigation.show(callback, await bookings_screen(session, client, settings, note))


# --- arrival -----------------------------------------------------------------------------------


def arrival_problem(exc: ArrivalRefused) -> str:
    return {
        ArrivalProblem.ON_SERVICE: _("The car is on service already: work order {number}."),
        ArrivalProblem.NO_CLIENT: _("The car has no client: link it to a client first."),
        ArrivalProblem.NOT_A_MASTER: _("Pick a master from the list."),
        ArrivalProblem.BOOKING_NOT_ACTIVE: _("The booking is cancelled or the car has arrived."),
        ArrivalProblem.BAD_MILEAGE: _("That is not a mileage. Send it in km, like 123456."),
        ArrivalProblem.TOO_LONG: _("That is too long: {limit} characters at most."),
        ArrivalProblem.MILEAGE_LOWER: _(
            "The mileage is lower than the last recorded ({km} km). Is it right?"
        ),
    }.get(exc.problem, _("The arrival was refused ({reason}).")).format(
        number=q(exc.detail),
        km=_km(int(exc.detail)) if exc.detail.isdigit() else "—",
        limit=arrivals.MAX_COMPLAINT,
        reason=exc.problem.value,
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _km(value: int | None) -> str:
    return "—" if value is None else f"{value:,}".replace(",", "\u00a0")


async def _car_title(session: AsyncSession, car_id: int) -> str | None:
    car = await session.get(Car, car_id, populate_existing=True)
    if car is None:
        return None
    code = car.plate or car.vin or car.body_number
    return f"🚗 <b>{q(car.name)}</b>" + (f" · {q(code)}" if code else "")


def _arrival_screen(
    dialog: dict[str, object], prompt: str, *rows: Iterable[tuple[str, CallbackData]]
) -> Screen:
    car_id = int(str(dialog["car_id"]))
    lines = [str(dialog["title"]), "<b>" + _("Car arrival") + "</b>"]
    if dialog.get("booking_text"):
        lines.append(_("By the booking of {when}").format(when=dialog["booking_text"]))
    lines.append(_("Last recorded mileage: {km} km").format(km=_km(_int(dialog.get("last")))))
    if dialog.get("mileage") is not None:
        lines.append(_("Mileage: {km} km").format(km=_km(int(str(dialog["mileage"])))))
    if dialog.get("complaint") is not None:
        lines.append(_("Complaint: {text}").format(text=q(dialog["complaint"])))
    lines += ["", prompt]
    cancel = (_("Cancel"), ArrivalStep(car_id=car_id, action="cancel"))
    return Screen("\n".join(lines), keyboard(*rows, [cancel]))


async def on_arrival(
    callback: CallbackQuery,
    callback_data: ArrivalStart,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    if not await _allowed(callback, session, staff, Permission.ARRIVAL):
        return
    car_id = callback_data.car_id
    title = await _car_title(session, car_id)
    if title is None:
        await _stale(callback, session, staff, "car")
        return
    now = utcnow()
    if callback_data.booking_id:
        booking = await session.get(Booking, callback_data.booking_id, populate_existing=True)
        if (
            booking is None
            or booking.car_id != car_id
            or BookingState(booking.state) is not BookingState.ACTIVE
        ):
            await _stale(callback, session, staff, "booking")
            return
    else:
        booking = await bookings.todays_booking(session, car_id, settings.tz, now)
    busy = await arrivals.in_progress(session, car_id)
    client_id = booking.client_id if booking else await arrivals.car_client(session, car_id)
    problem = None
    if busy is not None:
        problem = ArrivalRefused(ArrivalProblem.ON_SERVICE, busy.number)
    elif client_id is None:
        problem = ArrivalRefused(ArrivalProblem.NO_CLIENT)
    if problem is not None:
        await callback.answer(fmt.plain(arrival_problem(problem)), show_alert=True)
        return
    dialog = await dialogs.begin(
        state,
        ArrivalDialog.mileage,
        ARRIVAL,
        callback,
        car_id=car_id,
        client_id=client_id,
        booking_id=booking.id if booking else 0,
        booking_text=_slot_text(booking.starts_at, booking.bay, settings.tz) if booking else "",
        title=title,
        last=await arrivals.last_mileage(session, car_id),
        mileage=None,
        complaint=None,
        lower_ok=False,
    )
    await callback.answer()
    await navigation.show(callback, _arrival_screen(dialog, _("Send the mileage in km.")))


async def on_mileage(message: Message, state: FSMContext) -> None:
    dialog = await dialogs.live(state, ARRIVAL)
    value = arrivals.parse_mileage(message.text or "")
    car_id = int(dialog["car_id"])
    if value is None:
        screen = _arrival_screen(
            dialog,
            arrival_problem(ArrivalRefused(ArrivalProblem.BAD_MILEAGE)),
        )
        await dialogs.reprompt(message, state, dialog, screen)
        return
    dialog["mileage"], dialog["lower_ok"] = value, False
    last = dialog.get("last")
    if last is not None and value < int(last):
        screen = _arrival_screen(
            dialog,
            arrival_problem(ArrivalRefused(ArrivalProblem.MILEAGE_LOWER, str(last)))
            + "\n"
            + _("Confirm it, or send the right mileage."),
            [(_("Yes, it is right"), ArrivalStep(car_id=car_id, action="lower"))],
        )
        await dialogs.reprompt(message, state, dialog, screen)
        return
    await state.set_state(ArrivalDialog.complaint)
    await dialogs.reprompt(message, state, dialog, _complaint_prompt(dialog))


def _complaint_prompt(dialog: dict[str, object]) -> Screen:
    car_id = int(str(dialog["car_id"]))
    return _arrival_screen(
        dialog,
        _("Send the client's complaint (what is wrong with the car)."),
        [(_("No complaint"), ArrivalStep(car_id=car_id, action="skip"))],
    )


async def _masters_prompt(session: AsyncSession, dialog: dict[str, object]) -> Screen:
    car_id = int(str(dialog["car_id"]))
    people = (await arrivals.masters(session))[:MAX_MASTERS]
    rows = [
        [(fmt.cut("👨‍🔧 " + m.name, 60), ArrivalMaster(car_id=car_id, staff_id=m.id))]
        for m in people
    ]
    prompt = _("Who takes the car? Pick the master.") if people else _("There are no masters.")
    return _arrival_screen(dialog, prompt, *rows)


async def on_complaint(message: Message, session: AsyncSession, state: FSMContext) -> None:
    dialog = await dialogs.live(state, ARRIVAL)
    text = (message.text or "").strip()
    if len(text) > arrivals.MAX_COMPLAINT:
        problem = arrival_problem(ArrivalRefused(ArrivalProblem.TOO_LONG))
        prompt = _complaint_prompt(dialog)
        await dialogs.reprompt(
            message, state, dialog, Screen(f"{problem}\n{prompt.text}", prompt.markup)
        )
        return
    dialog["complaint"] = text
    await state.set_state(ArrivalDialog.master)
    await dialogs.reprompt(message, state, dialog, await _masters_prompt(session, dialog))


async def on_arrival_step(
    callback: CallbackQuery,
    callback_data: ArrivalStep,
    session: AsyncSession,
    staff: Staff,
    state: FSMContext,
) -> None:
    action = callback_data.action
    if action not in ("lower", "skip", "cancel"):
        await navigation.refuse(callback, session, staff, reason="malformed", detail=action)
        return
    if not await _allowed(callback, session, staff, Permission.ARRIVAL):
        return
    dialog = await dialogs.current(state, ARRIVAL)
    if dialog is None or dialog.get("car_id") != callback_data.car_id:
        await _stale(callback, session, staff, "dialog")
        return
    if action == "cancel":
        await dialogs.end(state)
        await callback.answer(_("Cancelled."))
        await navigation.show(
            callback,
            Screen(
                _("Cancelled."), keyboard([(_("« Back"), OpenCar(car_id=callback_data.car_id))])
            ),
        )
        return
    step = await state.get_state()
    if (
        action == "lower"
        and step == ArrivalDialog.mileage.state
        and dialog.get("mileage") is not None
    ):
        dialog["lower_ok"] = True
        await dialogs.save(state, dialog, ArrivalDialog.complaint)
        screen = _complaint_prompt(dialog)
    elif action == "skip" and step == ArrivalDialog.complaint.state:
        dialog["complaint"] = ""
        await dialogs.save(state, dialog, ArrivalDialog.master)
        screen = await _masters_prompt(session, dialog)
    else:
        await _stale(callback, session, staff, "step")
        return
    await callback.answer()
    await navigation.show(callback, screen)


async def on_master(
    callback: CallbackQuery,
    callback_data: ArrivalMaster,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    if not await _allowed(callback, session, staff, Permission.ARRIVAL):
        return
    dialog = await dialogs.current(state, ARRIVAL)
    if (
        dialog is None
        or dialog.get("car_id") != callback_data.car_id
        or await state.get_state() != ArrivalDialog.master.state
    ):
        await _stale(callback, session, staff, "dialog")
        return
    try:
        doc = await arrivals.check_in(
            session,
            car_id=callback_data.car_id,
            client_id=int(dialog["client_id"]),
            booking_id=int(dialog["booking_id"]) or None,
            mileage=int(dialog["mileage"]),
            complaint=str(dialog.get("complaint") or ""),
            master_id=callback_data.staff_id,
            actor=staff,
            prefix=settings.document_prefix,
            lower_mileage_confirmed=bool(dialog.get("lower_ok")),
        )
    except ArrivalRefused as exc:
        await _undo(session, staff)
        if exc.problem in (ArrivalProblem.CAR_NOT_FOUND, ArrivalProblem.BOOKING_NOT_FOUND):
            await dialogs.end(state)
            await _stale(callback, session, staff, exc.problem.value)
            return
        if exc.problem is ArrivalProblem.NOT_A_MASTER:
            await navigation.refuse(callback, session, staff, reason="stale", detail="master")
            return
        await callback.answer(fmt.plain(arrival_problem(exc)), show_alert=True)
        if exc.problem is ArrivalProblem.MILEAGE_LOWER:  # recorded meanwhile: ask again
            dialog["last"], dialog["mileage"] = int(exc.detail), None
            await dialogs.save(state, dialog, ArrivalDialog.mileage)
            await navigation.show(callback, _arrival_screen(dialog, _("Send the mileage in km.")))
        else:
            await dialogs.end(state)
        return
    master = await session.get(Staff, callback_data.staff_id)
    await session.commit()
    await dialogs.end(state)
    note = _(
        "✅ The car is checked in: work order {number} is in progress, master {name}."
    ).format(number=q(doc.number), name=q(master.name if master else "—"))
    await callback.answer(fmt.plain(note))
    await navigation.show(
        callback,
        Screen(note, keyboard([(_("🚗 To the car"), OpenCar(car_id=callback_data.car_id))])),
    )


# --- notifications -----------------------------------------------------------------------------


async def _notified_booking(
    session: AsyncSession, notification: Notification, ctx: AlertContext, *states: BookingState
) -> tuple[Booking, ZoneInfo] | None:
    """The booking a notification tells about, if it still is as told."""
    payload = notification.payload or {}
    booking = await session.get(Booking, int(payload.get("booking_id") or 0))
    if booking is None or BookingState(booking.state) not in states:
        return None
    if payload.get("starts_at") != booking.starts_at.isoformat():
        return None  # moved since: the move queued its own
    return booking, ctx.tz


@renders(Kind.BOOKING_CONFIRMED)
async def render_confirmed(
    session: AsyncSession, notification: Notification, ctx: AlertContext
) -> Rendered | None:
    found = await _notified_booking(session, notification, ctx, BookingState.ACTIVE)
    if found is None or found[0].starts_at <= datetime.now(UTC):
        return None
    booking, tz = found
    car = await bookings.car_label(session, booking.car_id)
    text = _("📅 You are booked for a repair: {when}.").format(
        when=f"<b>{fmt.when(booking.starts_at, tz)}</b>"
    )
    if car:
        text += "\n" + _("Car: {car}").format(car=q(car))
    return Rendered(text, digest_line=text.split("\n")[0])


@renders(Kind.BOOKING_REMINDER)
async def render_reminder(
    session: AsyncSession, notification: Notification, ctx: AlertContext
) -> Rendered | None:
    found = await _notified_booking(session, notification, ctx, BookingState.ACTIVE)
    if found is None or found[0].starts_at <= datetime.now(UTC):
        return None
    booking, tz = found
    text = _("⏰ A reminder: we expect your car tomorrow at {time}.").format(
        time=f"<b>{booking.starts_at.astimezone(tz).strftime('%H:%M')}</b>"
    )
    car = await bookings.car_label(session, booking.car_id)
    if car:
        text += "\n" + _("Car: {car}").format(car=q(car))
    return Rendered(text, digest_line=text.split("\n")[0])


@renders(Kind.BOOKING_CANCELLED)
async def render_cancelled(
    session: AsyncSession, notification: Notification, ctx: AlertContext
) -> Rendered | None:
    found = await _notified_booking(session, notification, ctx, BookingState.CANCELLED)
    if found is None:
        return None
    booking, tz = found
    text = _("Your repair booking of {when} is cancelled.").format(
        when=fmt.when(booking.starts_at, tz)
    )
    return Rendered(text, digest_line=text)


@renders(Kind.NEW_BOOKING)
async def render_new_booking(
    session: AsyncSession, notification: Notification, ctx: AlertContext
) -> Rendered | None:
    found = await _notified_booking(session, notification, ctx, BookingState.ACTIVE)
    if found is None:
        return None
    booking, tz = found
    client = await session.get(Client, booking.client_id)
    who = (notification.payload or {}).get("by") or "—"
    line = _("📅 {client}: booked for {when} by {who}.").format(
        client=q(client.name if client else "—"),
        when=_slot_text(booking.starts_at, booking.bay, tz),
        who=q(who),
    )
    markup = keyboard([(_("Open the booking"), BookingOpen(booking_id=booking.id))])
    return Rendered(line, markup=markup, digest_line=line)


__all__ = [
    "ArrivalDialog",
    "BookingDialog",
    "make_router",
    "render_cancelled",
    "render_confirmed",
    "render_new_booking",
    "render_reminder",
]
