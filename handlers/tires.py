"""The tire hotel (Шинный отель) from the client card: the client's sets, store a set (a
form: buttons for the season, count, wheels or tires, car and planned issue; the rest
typed one field after another), issue a set back; ``/tires A-3`` (a place, a plate or a
phone) finds sets. Rules in ``services.tires``; the season reminder's renderer at the end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import IsStaff, Magic, dialogs, fmt, navigation
from handlers.alerts import AlertContext, Rendered, renders
from handlers.callbacks import OpenClient, TireForm, TireIssue, TireList, TireOpen
from handlers.fmt import q
from handlers.payments import parse_amount
from handlers.screens import Screen, keyboard
from services import cards, tires
from services.access import Permission, can
from services.outbox import Kind
from services.tires import TireDraft, TireProblem, TireRefused
from storage.models import Client, Notification, Staff, TireSeason, TireSet, TireSetState

TIRES = "tires"
FIELDS = ("size", "brand", "tread", "place", "fee", "notes")
COUNTS = ("2", "4", "5", "6")
PLANS = ("3", "6", "9")  # months until the planned issue
MAX_CARS = 4


class TireDialog(StatesGroup):
    typing = State()


def make_router() -> Router:
    router = Router(name="tires")
    router.message.filter(IsStaff())
    router.callback_query.filter(IsStaff())
    router.message.register(on_find, Command("tires"))
    router.callback_query.register(on_list, TireList.filter())
    router.callback_query.register(on_form, TireForm.filter())
    router.callback_query.register(on_open, TireOpen.filter())
    router.callback_query.register(on_issue, TireIssue.filter())
    router.message.register(
        on_typed, StateFilter(TireDialog.typing), Magic(F.text), dialogs.not_a_command
    )
    return router


async def _allowed(callback: CallbackQuery, session: AsyncSession, staff: Staff) -> bool:
    if can(staff, Permission.TIRE_HOTEL):
        return True
    await navigation.refuse(
        callback, session, staff, reason="forbidden", detail=Permission.TIRE_HOTEL.value
    )
    return False


def season_name(season: str) -> str:
    return {
        TireSeason.SUMMER.value: _("summer"),
        TireSeason.WINTER.value: _("winter"),
        TireSeason.ALL_SEASON.value: _("all-season"),
    }.get(str(season), q(season))


def _tread(tenths: int | None) -> str:
    if tenths is None:
        return "—"
    return _("{mm} mm").format(
        mm=f"{tenths // 10}{',' if fmt.locale() == 'ru' else '.'}{tenths % 10}"
    )


def _set_line(row: TireSet, tz: Any) -> str:
    kind = _("wheels") if row.with_wheels else _("tires")
    state = _("stored") if TireSetState(row.state) is TireSetState.STORED else _("issued")
    return (
        _("{size} {brand}, {season}, {count} {kind} · place {rack}/{shelf} · {state}").format(
            size=q(row.size),
            brand=q(row.brand) if row.brand else "",
            season=season_name(row.season),
            count=row.count,
            kind=kind,
            rack=q(row.rack),
            shelf=q(row.shelf),
            state=state,
        )
        + f" · {fmt.day(row.stored_at, tz)}"
    )


# --- the client's sets -------------------------------------------------------------------


async def list_screen(
    session: AsyncSession, client: Client, settings: Settings, note: str = ""
) -> Screen:
    rows = await tires.client_sets(session, client.id)
    lines = [note, ""] if note else []
    lines += [f"🛞 <b>{q(client.name)}</b>", "<b>" + _("Tire hotel") + "</b>"]
    buttons: list[list[tuple[str, CallbackData]]] = []
    for row in rows[:20]:
        lines.append("• " + _set_line(row, settings.tz))
        label = f"🛞 {row.size} · {row.rack}/{row.shelf}"
        buttons.append([(fmt.cut(label, 60), TireOpen(set_id=row.id))])
    if not rows:
        lines.append(_("No sets stored yet."))
    buttons.append([(_("➕ Store a set"), TireForm(client_id=client.id, field="new"))])
    buttons.append([(_("« Back"), OpenClient(client_id=client.id))])
    return Screen("\n".join(lines), keyboard(*buttons))


async def on_list(
    callback: CallbackQuery,
    callback_data: TireList,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    if not await _allowed(callback, session, staff):
        return
    client = await session.get(Client, callback_data.client_id, populate_existing=True)
    if client is None:
        await navigation.refuse(callback, session, staff, reason="stale", detail="client")
        return
    await dialogs.end(state)
    await callback.answer()
    await navigation.show(callback, await list_screen(session, client, settings))


# --- storing a set ----------------------------------------------------------------------


def _prompts() -> dict[str, str]:
    return {
        "size": _("Send the size, like 205/55 R16."),
        "brand": _("Send the brand and model, like Nokian Hakkapeliitta 10."),
        "tread": _("Send the tread depth in mm, like 6.5."),
        "place": _("Send the storage place: rack and shelf, like A-3."),
        "fee": _("Send the storage fee, like 3000."),
        "notes": _("Send notes on the condition (cuts, repairs, rims), or tap Save."),
    }


def _default_season(now: datetime) -> str:
    """In spring winter sets come in, in autumn summer ones."""
    return TireSeason.WINTER.value if 2 <= now.month <= 8 else TireSeason.SUMMER.value


def form_screen(form: dict[str, Any], cars: list[tuple[int, str]], note: str = "") -> Screen:
    cid = int(form["client_id"])
    field = form.get("field")

    def mark(on: bool) -> str:
        return "✓ " if on else ""

    fee = form.get("fee")
    lines = [note, ""] if note else []
    lines += [
        f"🛞 <b>{q(form['name'])}</b> · " + _("Store a set"),
        _("Size: {value}").format(value=q(form.get("size"))),
        _("Brand: {value}").format(value=q(form.get("brand"))),
        _("Season: {value}").format(value=season_name(form["season"])),
        _("Count: {value}").format(value=form["count"]),
        _("Wheels or tires: {value}").format(
            value=_("wheels (on rims)") if form["wheels"] else _("tires only")
        ),
        _("Tread depth: {value}").format(value=_tread(form.get("tread"))),
        _("Condition: {value}").format(value=q(form.get("notes"))),
        _("Place: {value}").format(
            value=f"{q(form['rack'])}/{q(form['shelf'])}" if form.get("rack") else "—"
        ),
        _("Fee: {value}").format(value=fmt.money(int(fee)) if fee is not None else "—"),
        _("Planned issue: in {months} months").format(months=form["plan"]),
        "",
        _prompts().get(str(field), _("Check and tap Save.")),
    ]
    seasons = [
        (
            mark(form["season"] == s.value) + season_name(s.value),
            TireForm(client_id=cid, field="season", value=s.value),
        )
        for s in TireSeason
    ]
    counts = [
        (mark(str(form["count"]) == c) + c, TireForm(client_id=cid, field="count", value=c))
        for c in COUNTS
    ]
    wheels = [
        (
            mark(form["wheels"]) + _("wheels (on rims)"),
            TireForm(client_id=cid, field="wheels", value="1"),
        ),
        (
            mark(not form["wheels"]) + _("tires only"),
            TireForm(client_id=cid, field="wheels", value="0"),
        ),
    ]
    car_buttons = [
        (
            mark(form.get("car_id") == car_id) + "🚗 " + fmt.cut(label, 20),
            TireForm(client_id=cid, field="car", value=str(car_id)),
        )
        for car_id, label in cars[:MAX_CARS]
    ]
    plans = [
        (
            mark(str(form["plan"]) == p) + _("{months} mo").format(months=p),
            TireForm(client_id=cid, field="plan", value=p),
        )
        for p in PLANS
    ]
    edits = [
        ("✏️ " + label, TireForm(client_id=cid, field="ask", value=name))
        for name, label in (
            ("size", _("Size")),
            ("brand", _("Brand")),
            ("tread", _("Tread")),
            ("place", _("Place")),
            ("fee", _("Fee")),
            ("notes", _("Condition")),
        )
    ]
    return Screen(
        "\n".join(lines),
        keyboard(
            seasons,
            counts,
            wheels,
            car_buttons,
            plans,
            edits[:3],
            edits[3:],
            [
                (_("💾 Save"), TireForm(client_id=cid, field="save")),
                (_("Cancel"), TireList(client_id=cid)),
            ],
        ),
    )


async def _cars(session: AsyncSession, client_id: int) -> list[tuple[int, str]]:
    card = await cards.client_card(session, client_id)
    if card is None:
        return []
    return [(c.id, c.plate or c.vin or c.body_number or c.name) for c in card.cars]


def _next_field(form: dict[str, Any]) -> str | None:
    for name in FIELDS:
        key = "rack" if name == "place" else name
        if form.get(key) is None:
            return name
    return None


async def on_form(
    callback: CallbackQuery,
    callback_data: TireForm,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    if not await _allowed(callback, session, staff):
        return
    cid, field, value = callback_data.client_id, callback_data.field, callback_data.value
    client = await session.get(Client, cid, populate_existing=True)
    if client is None:
        await navigation.refuse(callback, session, staff, reason="stale", detail="client")
        return
    cars = await _cars(session, cid)
    if field == "new":
        now = datetime.now(UTC)
        fresh = await dialogs.begin(
            state,
            TireDialog.typing,
            TIRES,
            callback,
            client_id=cid,
            name=client.name,
            season=_default_season(now),
            count=4,
            wheels=False,
            car_id=cars[0][0] if len(cars) == 1 else None,
            plan="6",
            field="size",
        )
        await callback.answer()
        await navigation.show(callback, form_screen(fresh, cars))
        return
    form = await dialogs.current(state, TIRES)
    if form is None or form.get("client_id") != cid:
        await navigation.refuse(callback, session, staff, reason="stale", detail="dialog")
        return
    if field == "season" and value in {s.value for s in TireSeason}:
        form["season"] = value
    elif field == "count" and value in COUNTS:
        form["count"] = int(value)
    elif field == "wheels" and value in ("0", "1"):
        form["wheels"] = value == "1"
    elif field == "car" and value.isdigit() and int(value) in {c for c, _l in cars}:
        form["car_id"] = None if form.get("car_id") == int(value) else int(value)
    elif field == "plan" and value in PLANS:
        form["plan"] = value
    elif field == "ask" and value in FIELDS:
        form["field"] = value
    elif field == "save":
        await _save(callback, form, session, staff, settings, state, cars)
        return
    else:
        await navigation.refuse(callback, session, staff, reason="malformed", detail=field)
        return
    await dialogs.save(state, form)
    await callback.answer()
    await navigation.show(callback, form_screen(form, cars))


def _parse(field: str, text: str) -> dict[str, Any] | None:
    """The form values a typed ``text`` gives ``field``; None when it does not fit."""
    text = text.strip()
    if field == "tread":
        tread = tires.parse_tread(text)
        return None if tread is None else {"tread": tread}
    if field == "place":
        place = tires.parse_place(text)
        return None if place is None else {"rack": place[0], "shelf": place[1]}
    if field == "fee":
        fee = parse_amount(text, fmt.locale())
        return None if fee is None or fee < 0 else {"fee": fee}
    limits = {"size": tires.MAX_SIZE, "brand": tires.MAX_BRAND, "notes": tires.MAX_CONDITION}
    if not text or len(text) > limits[field]:
        return None
    return {field: text}


async def on_typed(message: Message, session: AsyncSession, state: FSMContext) -> None:
    form = await dialogs.live(state, TIRES)
    field = str(form.get("field") or "notes")
    values = _parse(field, message.text or "")
    cars = await _cars(session, int(form["client_id"]))
    if values is None:
        note = "⚠️ " + _("That does not fit.") + " " + _prompts()[field]
        await dialogs.reprompt(message, state, form, form_screen(form, cars, note))
        return
    form.update(values)
    form["field"] = _next_field(form)
    await dialogs.reprompt(message, state, form, form_screen(form, cars))


def tire_problem(exc: TireRefused) -> str:
    return {
        TireProblem.BAD_SIZE: _("Send the size first."),
        TireProblem.BAD_PLACE: _("Send the storage place first."),
        TireProblem.BAD_COUNT: _("Pick the count."),
        TireProblem.BAD_FEE: _("The fee is not right."),
        TireProblem.BAD_TREAD: _("The tread depth is not right."),
        TireProblem.ALREADY_ISSUED: _("The set was issued already."),
    }.get(exc.problem, _("The tire hotel refused it ({reason}).").format(reason=exc.problem.value))


async def _save(
    callback: CallbackQuery,
    form: dict[str, Any],
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
    cars: list[tuple[int, str]],
) -> None:
    now = datetime.now(UTC)
    draft = TireDraft(
        size=str(form.get("size") or ""),
        season=TireSeason(form["season"]),
        count=int(form["count"]),
        with_wheels=bool(form["wheels"]),
        rack=str(form.get("rack") or ""),
        shelf=str(form.get("shelf") or ""),
        brand=form.get("brand"),
        tread_tenths_mm=form.get("tread"),
        condition=form.get("notes"),
        fee=int(form.get("fee") or 0),
        planned_issue_at=now + timedelta(days=30 * int(form["plan"])),
        car_id=form.get("car_id"),
    )
    await session.commit()  # end the read: the service starts its write with the lock
    try:
        row = await tires.store(session, int(form["client_id"]), draft, actor=staff, now=now)
    except TireRefused as exc:
        await session.rollback()
        await session.refresh(staff)
        if exc.problem in (TireProblem.CLIENT_NOT_FOUND, TireProblem.CAR_NOT_LINKED):
            await dialogs.end(state)
            await navigation.refuse(callback, session, staff, reason="stale", detail=exc.problem)
            return
        await callback.answer(fmt.plain(tire_problem(exc)), show_alert=True)
        return
    set_id = row.id
    await session.commit()
    await dialogs.end(state)
    note = _("✅ The set is stored at {rack}/{shelf}.").format(
        rack=q(row.rack), shelf=q(row.shelf)
    )
    await callback.answer(fmt.plain(note))
    screen = await set_screen(session, settings, set_id, note)
    await navigation.show(callback, screen or Screen(note))


# --- one set: issue it back ------------------------------------------------------------------


async def set_screen(
    session: AsyncSession, settings: Settings, set_id: int, note: str = ""
) -> Screen | None:
    row = await session.get(TireSet, set_id, populate_existing=True)
    if row is None:
        return None
    client = await session.get(Client, row.client_id)
    tz = settings.tz
    lines = [note, ""] if note else []
    lines += [
        f"🛞 <b>{q(client.name if client else '—')}</b>",
        _set_line(row, tz),
        _("Tread depth: {value}").format(value=_tread(row.tread_tenths_mm)),
        _("Condition: {value}").format(value=q(row.condition)),
        _("Fee: {value}").format(value=fmt.money(row.fee)),
        _("Stored: {when}").format(when=fmt.when(row.stored_at, tz)),
        _("Planned issue: {when}").format(when=fmt.day(row.planned_issue_at, tz)),
        _("Issued: {when}").format(when=fmt.when(row.issued_at, tz)),
    ]
    rows: list[list[tuple[str, CallbackData]]] = []
    if TireSetState(row.state) is TireSetState.STORED:
        rows.append([(_("📤 Issue to the client"), TireIssue(set_id=row.id))])
    rows.append([(_("« Tire hotel"), TireList(client_id=row.client_id))])
    return Screen("\n".join(lines), keyboard(*rows))


async def on_open(
    callback: CallbackQuery,
    callback_data: TireOpen,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
) -> None:
    if not await _allowed(callback, session, staff):
        return
    screen = await set_screen(session, settings, callback_data.set_id)
    if screen is None:
        await navigation.refuse(callback, session, staff, reason="stale", detail="tire_set")
        return
    await callback.answer()
    await navigation.show(callback, screen)


async def on_issue(
    callback: CallbackQuery,
    callback_data: TireIssue,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
) -> None:
    if not await _allowed(callback, session, staff):
        return
    row = await session.get(TireSet, callback_data.set_id, populate_existing=True)
    if row is None or TireSetState(row.state) is not TireSetState.STORED:
        await navigation.refuse(callback, session, staff, reason="stale", detail="tire_set")
        return
    if not callback_data.sure:
        text = _("Issue the set {size} from {rack}/{shelf} to the client?").format(
            size=q(row.size), rack=q(row.rack), shelf=q(row.shelf)
        )
        await callback.answer()
        await navigation.show(
            callback,
            Screen(
                text,
                keyboard(
                    [
                        (_("Yes, issue it"), TireIssue(set_id=row.id, sure=True)),
                        (_("No"), TireOpen(set_id=row.id)),
                    ]
                ),
            ),
        )
        return
    await session.commit()  # end the read: the service starts its write with the lock
    try:
        await tires.issue(session, row.id, actor=staff)
    except TireRefused:
        await session.rollback()
        await session.refresh(staff)
        await navigation.refuse(callback, session, staff, reason="stale", detail="tire_set")
        return
    set_id = row.id
    await session.commit()
    note = _("📤 The set is issued.")
    await callback.answer(fmt.plain(note))
    screen = await set_screen(session, settings, set_id, note)
    await navigation.show(callback, screen or Screen(note))


# --- finding a set ----------------------------------------------------------------------------


async def on_find(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
) -> None:
    if not can(staff, Permission.TIRE_HOTEL):
        await message.answer(_("Your role cannot use the tire hotel."))
        return
    query = (command.args or "").strip()
    if not query:
        await message.answer(_("Send /tires and a place, a plate or a phone, like /tires A-3."))
        return
    found = await tires.find_sets(session, query, settings.default_region)
    if not found:
        await message.answer(_("No tire sets found for «{query}».").format(query=q(query)))
        return
    lines = ["🛞 " + _("Tire sets found: {count}").format(count=len(found))]
    buttons = []
    for row in found:
        lines.append("• " + _set_line(row, settings.tz))
        buttons.append(
            [(fmt.cut(f"🛞 {row.size} · {row.rack}/{row.shelf}", 60), TireOpen(set_id=row.id))]
        )
    await message.answer("\n".join(lines), reply_markup=keyboard(*buttons))


# --- the season reminder -------------------------------------------------------------------------


@renders(Kind.TIRE_SEASON)
async def render_tire_season(
    session: AsyncSession, notification: Notification, ctx: AlertContext
) -> Rendered | None:
    """Still true only while a set of that season is stored with us."""
    payload = notification.payload or {}
    season = str(payload.get("season") or "")
    if notification.client_id is None or season not in {s.value for s in TireSeason}:
        return None
    stored = list(
        await session.scalars(
            select(TireSet).where(
                TireSet.client_id == notification.client_id,
                TireSet.state == TireSetState.STORED,
                TireSet.season == season,
            )
        )
    )
    if not stored:
        return None
    text = {
        TireSeason.WINTER.value: _(
            "❄️ Time for winter tires! Your set is stored with us: book a tire change."
        ),
        TireSeason.SUMMER.value: _(
            "☀️ Time for summer tires! Your set is stored with us: book a tire change."
        ),
    }.get(season, _("🛞 Time to change tires! Your set is stored with us: book a tire change."))
    sizes = ", ".join(q(row.size) for row in stored)
    return Rendered(text + "\n" + sizes, digest_line=text)


__all__ = ["TireDialog", "make_router", "render_tire_season"]
