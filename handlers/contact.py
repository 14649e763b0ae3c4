"""Contacting the client and editing the contact information (Связь с клиентом,
Контактная информация), from the client card's ``ContactMenu`` buttons.

- ``edit``: the contact rows, each with edit / delete (asked first) / make main; "Add"
  asks the kind, then the value. A bad value is refused with the reason and the dialog
  stays open for another try (``services.contacts``).
- ``call``: the phone numbers and the outcome buttons (reached, no answer, call back in
  1 h, 3 h, tomorrow at 10:00 shop time) -> ``services.messaging.log_call``.
- ``sms``, ``email``, ``tg``: the text is asked (for e-mail the subject first), shown
  back, and only sent on "Send": a text typed into a forgotten dialog never leaves the
  shop. Every attempt is an event, a failed one with its reason.
- ``log``: register a contact by hand: kind, direction, result, comment, follow-up.
- The Events tab: :func:`event_buttons` gives its "processed" buttons.

Dialogs are FSM states; their data sits under one key (``DIALOG``) next to the screen
trail of ``handlers.navigation``, which is never cleared here. A dialog ends when the user
moves elsewhere (the trail's current screen changed) or after ``DIALOG_TTL``: the text is
then passed on (``SkipHandler``) and searched as usual. Every press re-checks the role;
a forged or stale one is refused and audited (``handlers.navigation.refuse``).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bot.config import Settings
from handlers import IsStaff, Magic, fmt, navigation, screens
from handlers.callbacks import ClientTab, ContactMenu, OpenClient, Packed
from handlers.fmt import q
from handlers.screens import keyboard
from services import contacts, messaging
from services.access import Permission, can
from services.contacts import ContactProblem, InvalidContact
from services.events import EventRow
from services.messaging import (
    CallOutcome,
    DeliveryOutcome,
    DeliveryStatus,
    MessagingProblem,
    MessagingRefused,
    SmsGateway,
    SmtpSettings,
)
from services.search import SearchService
from storage.db import begin_immediate
from storage.models import Client, ContactInfo, ContactKind, Direction, Event, EventKind, Staff

DIALOG = "contact_dialog"  # the FSM data key of the open dialog
DIALOG_TTL = 30 * 60  # seconds: a dialog left alone longer is forgotten
PREVIEW_CHARS = 3000  # of a long text shown back before sending
BUTTON_CHARS = 60
MAX_ROWS = 30  # contact rows with buttons (Telegram allows 100 buttons)
ACTIONS = frozenset({"edit", "call", "sms", "email", "tg", "log"})
LOG_RESULTS = ("agreed", "declined", "thinking", "informed")
CALL_BACK_TOMORROW = clock(10, 0)  # shop time


# --- buttons ---------------------------------------------------------------------------


class ContactEdit(Packed, CallbackData, prefix="ce"):
    """Contact rows: ``list``, ``add`` (pick the kind), ``new`` (ask the value of ``kind``),
    ``edit`` (ask the new value), ``kind`` (change the kind), ``ask`` / ``del`` (delete,
    asked first), ``main`` (make it the main phone)."""

    client_id: int
    action: str
    contact_id: int = 0
    kind: str = ""


class CallResult(Packed, CallbackData, prefix="cr"):
    client_id: int
    outcome: str  # reached | no_answer | cb1 | cb3 | cbt (call back: 1 h, 3 h, tomorrow)


class Outgoing(Packed, CallbackData, prefix="cs"):
    """SMS, e-mail and Telegram dialogs: ``send``, ``cancel``, ``nosubject``."""

    client_id: int
    action: str


class LogForm(Packed, CallbackData, prefix="cg"):
    """Register a contact: ``kind``, ``dir``, ``result`` (toggled), ``follow``, ``save``."""

    client_id: int
    field: str
    value: str = ""


class EventDone(Packed, CallbackData, prefix="evd"):
    event_id: int
    page: int = 0  # the Events tab page to show again


class EventsAllDone(Packed, CallbackData, prefix="eva"):
    client_id: int
    page: int = 0


class Dialog(StatesGroup):
    contact_value = State()
    sms_text = State()
    email_subject = State()
    email_body = State()
    tg_text = State()
    log_comment = State()


def make_router() -> Router:
    router = Router(name="contact")
    router.message.filter(IsStaff())
    router.callback_query.filter(IsStaff())
    router.callback_query.register(on_menu, ContactMenu.filter())
    router.callback_query.register(on_contact_edit, ContactEdit.filter())
    router.callback_query.register(on_call_result, CallResult.filter())
    router.callback_query.register(on_outgoing, Outgoing.filter())
    router.callback_query.register(on_log_form, LogForm.filter())
    router.callback_query.register(on_event_done, EventDone.filter())
    router.callback_query.register(on_events_all_done, EventsAllDone.filter())
    # Typed input, only inside our dialogs; commands go on to their handlers.
    router.message.register(
        on_contact_value, StateFilter(Dialog.contact_value), _typed_or_shared_contact
    )
    router.message.register(
        on_text,
        StateFilter(Dialog.sms_text, Dialog.email_subject, Dialog.email_body, Dialog.tg_text),
        Magic(F.text),
        _not_a_command,
    )
    router.message.register(
        on_log_comment, StateFilter(Dialog.log_comment), Magic(F.text), _not_a_command
    )
    router.message.register(on_not_text, StateFilter(Dialog), _not_a_command)
    return router


# Coroutines: aiogram runs a plain function filter in a worker thread (see handlers.Magic).
async def _not_a_command(message: Message) -> bool:
    return not (message.text or "").startswith("/")


async def _typed_or_shared_contact(message: Message) -> bool:
    typed = message.text is not None and not message.text.startswith("/")
    return typed or message.contact is not None


def _to_card(client_id: int) -> tuple[str, CallbackData]:
    return _("« Back"), OpenClient(client_id=client_id)


# --- the Events tab ----------------------------------------------------------------------


def event_buttons(
    rows: Iterable[EventRow], client_id: int, *, page: int = 0, tz: ZoneInfo | None = None
) -> list[list[InlineKeyboardButton]]:
    """For ``handlers.screens._events_tab``: a "processed" button for each new event of
    the page, and one for all of the client's new events (when the page has any)."""
    buttons = []
    for row in rows:
        if not row.is_new:
            continue
        label = "✔ " + screens.event_kind_name(row.kind)
        if tz is not None:
            label += " · " + fmt.when(row.created_at, tz)
        if row.text:
            label += " · " + " ".join(row.text.split())
        buttons.append(
            [
                InlineKeyboardButton(
                    text=fmt.cut(label, BUTTON_CHARS),
                    callback_data=EventDone(event_id=row.id, page=page).pack(),
                )
            ]
        )
    if buttons:
        buttons.append(
            [
                InlineKeyboardButton(
                    text=_("✔ Mark all processed"),
                    callback_data=EventsAllDone(client_id=client_id, page=page).pack(),
                )
            ]
        )
    return buttons


def event_result_name(result: str | None) -> str:
    """An event's ``result`` as the user reads it (call outcomes, registered contacts)."""
    names = {
        CallOutcome.REACHED.value: _("reached"),
        CallOutcome.NO_ANSWER.value: _("no answer"),
        CallOutcome.CALL_BACK.value: _("call back"),
        **_log_results(),
    }
    return names.get(result or "", q(result))


def _log_results() -> dict[str, str]:
    return {
        "agreed": _("agreed"),
        "declined": _("declined"),
        "thinking": _("will think"),
        "informed": _("informed"),
    }


async def on_event_done(
    callback: CallbackQuery,
    callback_data: EventDone,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    if not await _allowed(callback, session, staff, Permission.EVENTS):
        return
    await begin_immediate(session)
    event = await session.get(Event, callback_data.event_id)
    if event is None:
        await _stale(callback, session, staff, "event")
        return
    client_id = event.client_id
    done = await messaging.mark_processed(session, event.id, staff)
    await session.commit()
    await callback.answer(_("Marked as processed.") if done else _("It was processed already."))
    await _show_events(
        callback, client_id, callback_data.page, session, staff, settings, search_service, state
    )


async def on_events_all_done(
    callback: CallbackQuery,
    callback_data: EventsAllDone,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    if not await _allowed(callback, session, staff, Permission.EVENTS):
        return
    try:
        count = await messaging.mark_all_processed(session, callback_data.client_id, staff)
    except MessagingRefused:
        await _undo(session, staff)
        await _stale(callback, session, staff, "client")
        return
    await session.commit()
    await callback.answer(
        _("Marked as processed: {count}.").format(count=count)
        if count
        else _("Nothing new to process.")
    )
    await _show_events(
        callback,
        callback_data.client_id,
        callback_data.page,
        session,
        staff,
        settings,
        search_service,
        state,
    )


async def _show_events(
    callback: CallbackQuery,
    client_id: int,
    page: int,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    ctx = navigation.screen_context(session, staff, settings, search_service, state)
    for target in (page, 0):
        try:
            screen = await screens.render(
                OpenClient(client_id=client_id, tab=ClientTab.EVENTS, page=target), ctx
            )
        except screens.Stale:
            continue
        except screens.Forbidden:
            return
        await navigation.show(callback, screen)
        return


# --- the entry: ContactMenu ------------------------------------------------------------------


async def on_menu(
    callback: CallbackQuery,
    callback_data: ContactMenu,
    session: AsyncSession,
    staff: Staff,
    state: FSMContext,
    smtp: SmtpSettings | None = None,
) -> None:
    action = callback_data.action
    if action not in ACTIONS:
        await navigation.refuse(callback, session, staff, reason="malformed", detail=action)
        return
    need = Permission.EDIT_CLIENT if action == "edit" else Permission.EVENTS
    if not await _allowed(callback, session, staff, need):
        return
    client = await _load_client(session, callback_data.client_id)
    if client is None:
        await _stale(callback, session, staff, "client")
        return
    await _end(state)
    problem = _cannot(action, client, smtp)
    if problem:
        await callback.answer(problem, show_alert=True)
        return
    if action == "edit":
        screen = contacts_screen(client)
    elif action == "call":
        screen = call_screen(client)
    elif action == "log":
        await _begin(state, Dialog.log_comment, client, callback, **_LOG_DEFAULTS)
        screen = log_form_screen(client.id, client.name, await _dialog(state) or {})
    else:
        step = {"sms": Dialog.sms_text, "email": Dialog.email_subject, "tg": Dialog.tg_text}
        await _begin(state, step[action], client, callback, channel=action)
        screen = _prompt_screen(action, client.id, client.name, await _dialog(state) or {})
    await callback.answer()
    await navigation.show(callback, screen)


def _cannot(action: str, client: Client, smtp: SmtpSettings | None) -> str | None:
    """Why this way of contacting the client cannot be used now, or None."""
    kinds = {ContactKind(c.kind) for c in client.contacts}
    if action == "sms" and not (client.main_phone or kinds & contacts.PHONE_KINDS):
        return _("The client has no phone number for an SMS.")
    if action == "email":
        if smtp is None:
            return _("E-mail is not set up: the administrator sets SMTP_HOST.")
        if ContactKind.EMAIL not in kinds:
            return _("The client has no e-mail address. Add one to the contacts first.")
    if action == "tg" and client.telegram_chat_id is None:
        return _("The client has not linked Telegram with the bot, so there is nowhere to write.")
    return None


# --- contact information ------------------------------------------------------------------


def _shown_value(contact: ContactInfo) -> str:
    kind = ContactKind(contact.kind)
    return fmt.format_phone(contact.value) if kind in contacts.PHONE_KINDS else contact.value


def _is_main(client: Client, contact: ContactInfo) -> bool:
    return ContactKind(contact.kind) in contacts.PHONE_KINDS and contact.value == client.main_phone


def contacts_screen(client: Client, note: str = "") -> screens.Screen:
    rows = sorted(client.contacts, key=lambda c: c.id)
    lines = [note, ""] if note else []
    lines += [f"<b>{q(client.name)}</b>", "<b>" + _("Contact information") + "</b>"]
    buttons: list[list[tuple[str, CallbackData]]] = []
    for number, contact in enumerate(rows, start=1):
        main = " · " + _("main phone") if _is_main(client, contact) else ""
        comment = f" ({q(contact.comment)})" if contact.comment else ""
        lines.append(
            f"{number}. {screens.contact_kind_name(contact.kind)}: "
            f"{q(_shown_value(contact))}{comment}{main}"
        )
        if number > MAX_ROWS:
            continue
        row: list[tuple[str, CallbackData]] = [
            (
                fmt.cut(f"✏️ {number}. {_shown_value(contact)}", 40),
                ContactEdit(client_id=client.id, action="edit", contact_id=contact.id),
            ),
            (f"🗑 {number}", ContactEdit(client_id=client.id, action="ask", contact_id=contact.id)),
        ]
        if ContactKind(contact.kind) in contacts.PHONE_KINDS and not _is_main(client, contact):
            row.append(
                (
                    f"⭐ {number}",
                    ContactEdit(client_id=client.id, action="main", contact_id=contact.id),
                )
            )
        buttons.append(row)
    if not rows:
        lines.append(_("No contacts yet."))
    else:
        lines += ["", _("✏️ change · 🗑 delete · ⭐ make it the main phone")]
    buttons.append([(_("➕ Add"), ContactEdit(client_id=client.id, action="add"))])
    buttons.append([_to_card(client.id)])
    return screens.Screen(fmt.paginate(lines[0], lines[1:])[0], keyboard(*buttons))


def _kind_picker(client: Client) -> screens.Screen:
    kinds = list(ContactKind)
    buttons = [
        (
            screens.contact_kind_name(kind),
            ContactEdit(client_id=client.id, action="new", kind=kind),
        )
        for kind in kinds
    ]
    back = (_("Cancel"), ContactEdit(client_id=client.id, action="list"))
    text = "\n".join([f"<b>{q(client.name)}</b>", _("Which kind of contact to add?")])
    return screens.Screen(text, keyboard(buttons[:2], buttons[2:], [back]))


def _value_prompt(
    client: Client, contact: ContactInfo | None, kind: ContactKind
) -> screens.Screen:
    cancel = (_("Cancel"), ContactEdit(client_id=client.id, action="list"))
    head = f"<b>{q(client.name)}</b>"
    if contact is None:
        text = _("New contact: {kind}. Send the value as a message.").format(
            kind=screens.contact_kind_name(kind)
        )
        if kind in contacts.PHONE_KINDS:
            text += "\n" + _("For example: +7 945 123-10-10 or 8 945 123 10 10.")
        return screens.Screen(f"{head}\n{text}", keyboard([cancel]))
    text = _("{kind}: {value}\nSend the new value, or change the kind with the buttons.").format(
        kind=screens.contact_kind_name(contact.kind), value=q(_shown_value(contact))
    )
    kinds = [
        (
            screens.contact_kind_name(other),
            ContactEdit(client_id=client.id, action="kind", contact_id=contact.id, kind=other),
        )
        for other in ContactKind
        if other != ContactKind(contact.kind)
    ]
    return screens.Screen(f"{head}\n{text}", keyboard(kinds[:2], kinds[2:], [cancel]))


def _contact_refusal(exc: InvalidContact) -> str:
    problem = exc.problem
    if problem is ContactProblem.BAD_PHONE:
        reasons = {
            "empty": _("it is empty"),
            "no digits": _("there are no digits in it"),
            "wrong number of digits": _("the number of digits is wrong"),
            "not a valid number": _("there is no such number"),
        }
        reason = reasons.get(exc.detail, _("it does not look like a phone number"))
        return _("This is not a phone number: {reason}.").format(reason=reason)
    if problem is ContactProblem.BAD_EMAIL:
        return _("This is not an e-mail address (like name@mail.ru): {detail}").format(
            detail=q(exc.detail)
        )
    return {
        ContactProblem.FORBIDDEN: _("Your role cannot change contact information."),
        ContactProblem.CLIENT_NOT_FOUND: _("This client is gone."),
        ContactProblem.CONTACT_NOT_FOUND: _("This contact is gone."),
        ContactProblem.EMPTY: _("The value is empty."),
        ContactProblem.TOO_LONG: _("That is too long: {limit} characters at most.").format(
            limit=contacts.MAX_VALUE
        ),
        ContactProblem.DUPLICATE: _("The client already has this contact."),
        ContactProblem.NOT_A_PHONE: _("Only a phone number can be the main phone."),
    }.get(problem, q(str(exc)))


_GONE = frozenset(
    {ContactProblem.FORBIDDEN, ContactProblem.CLIENT_NOT_FOUND, ContactProblem.CONTACT_NOT_FOUND}
)


async def on_contact_edit(
    callback: CallbackQuery,
    callback_data: ContactEdit,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    state: FSMContext,
) -> None:
    action, cid = callback_data.action, callback_data.client_id
    if action not in ("list", "add", "new", "edit", "kind", "ask", "del", "main"):
        await navigation.refuse(callback, session, staff, reason="malformed", detail=action)
        return
    if not await _allowed(callback, session, staff, Permission.EDIT_CLIENT):
        return
    if action in ("kind", "del", "main"):  # changes: the service takes the lock first
        try:
            note = await _change_contact(session, callback_data, staff, settings)
        except InvalidContact as exc:
            await _undo(session, staff)
            if exc.problem in _GONE:
                await _stale(callback, session, staff, exc.problem.value)
            else:
                await callback.answer(fmt.plain(_contact_refusal(exc)), show_alert=True)
            return
        await session.commit()
        await _end(state)
        client = await _load_client(session, cid)
        if client is None:  # pragma: no cover - changed a moment ago
            await callback.answer()
            return
        await callback.answer(note)
        await navigation.show(callback, contacts_screen(client, note))
        return
    client = await _load_client(session, cid)
    if client is None:
        await _stale(callback, session, staff, "client")
        return
    contact = None
    if callback_data.contact_id:
        contact = next((c for c in client.contacts if c.id == callback_data.contact_id), None)
        if contact is None:
            await _stale(callback, session, staff, "contact")
            return
    await _end(state)
    if action == "list":
        screen = contacts_screen(client)
    elif action == "add":
        screen = _kind_picker(client)
    elif action == "new":
        try:
            kind = ContactKind(callback_data.kind)
        except ValueError:
            await navigation.refuse(callback, session, staff, reason="malformed", detail="kind")
            return
        await _begin(state, Dialog.contact_value, client, callback, kind=kind.value, contact_id=0)
        screen = _value_prompt(client, None, kind)
    elif action == "edit" and contact is not None:
        kind = ContactKind(contact.kind)
        await _begin(
            state, Dialog.contact_value, client, callback, kind=kind.value, contact_id=contact.id
        )
        screen = _value_prompt(client, contact, kind)
    elif action == "ask" and contact is not None:
        text = _("Delete {kind}: {value}?").format(
            kind=screens.contact_kind_name(contact.kind), value=q(_shown_value(contact))
        )
        screen = screens.Screen(
            f"<b>{q(client.name)}</b>\n{text}",
            keyboard(
                [
                    (
                        _("Yes, delete"),
                        ContactEdit(client_id=cid, action="del", contact_id=contact.id),
                    ),
                    (_("Cancel"), ContactEdit(client_id=cid, action="list")),
                ]
            ),
        )
    else:
        await navigation.refuse(callback, session, staff, reason="malformed", detail=action)
        return
    await callback.answer()
    await navigation.show(callback, screen)


async def _change_contact(
    session: AsyncSession, cb: ContactEdit, staff: Staff, settings: Settings
) -> str:
    """A change made by a press; the note to show. The contact must be the client's."""
    if not cb.contact_id:
        raise InvalidContact(ContactProblem.CONTACT_NOT_FOUND, "0")
    await begin_immediate(session)
    owner = await session.get(ContactInfo, cb.contact_id)
    if owner is None or owner.client_id != cb.client_id:
        raise InvalidContact(ContactProblem.CONTACT_NOT_FOUND, str(cb.contact_id))
    if cb.action == "del":
        await contacts.delete_contact(session, cb.contact_id, actor=staff)
        return _("🗑 Deleted.")
    if cb.action == "main":
        await contacts.make_main(session, cb.contact_id, actor=staff)
        return _("⭐ This is the main phone now.")
    try:
        kind = ContactKind(cb.kind)
    except ValueError:
        raise InvalidContact(ContactProblem.CONTACT_NOT_FOUND, "kind") from None
    await contacts.edit_contact(
        session, cb.contact_id, actor=staff, kind=kind, region=settings.default_region
    )
    return _("✅ Saved.")


async def on_contact_value(
    message: Message, session: AsyncSession, staff: Staff, settings: Settings, state: FSMContext
) -> None:
    dialog = await _live(state, "contact")
    shared = message.contact.phone_number if message.contact is not None else ""
    value = message.text if message.text is not None else shared
    client_id, contact_id = dialog["client_id"], dialog.get("contact_id") or 0
    try:
        if contact_id:
            await contacts.edit_contact(
                session, contact_id, actor=staff, value=value, region=settings.default_region
            )
        else:
            await contacts.add_contact(
                session,
                client_id,
                ContactKind(dialog["kind"]),
                value,
                actor=staff,
                region=settings.default_region,
            )
    except InvalidContact as exc:
        await _undo(session, staff)
        if exc.problem in _GONE:
            await _end(state)
            await message.answer(_contact_refusal(exc))
            return
        cancel = (_("Cancel"), ContactEdit(client_id=client_id, action="list"))
        text = _("{reason}\nSend another value, or tap «{cancel}».").format(
            reason=_contact_refusal(exc), cancel=_("Cancel")
        )
        await _reprompt(message, state, dialog, screens.Screen(text, keyboard([cancel])))
        return
    await session.commit()
    await _end(state)
    await _retire(message.bot, message.chat.id, dialog.get("msg"))
    client = await _load_client(session, client_id)
    if client is not None:
        screen = contacts_screen(client, _("✅ Saved."))
        await message.answer(screen.text, reply_markup=screen.markup)


# --- calls -------------------------------------------------------------------------------


def _phones(client: Client) -> list[tuple[str, str]]:
    """(kind name, E.164 digits) of the client's phones, the main one first."""
    phones = [
        (screens.contact_kind_name(c.kind), c.value)
        for c in sorted(client.contacts, key=lambda c: c.id)
        if ContactKind(c.kind) in contacts.PHONE_KINDS
    ]
    if client.main_phone and client.main_phone not in {v for _k, v in phones}:
        phones.insert(0, (_("Main phone"), client.main_phone))
    phones.sort(key=lambda p: p[1] != client.main_phone)
    return phones


def call_screen(client: Client) -> screens.Screen:
    cid = client.id
    lines = ["📞 " + _("Call {name}").format(name=f"<b>{q(client.name)}</b>"), ""]
    phones = _phones(client)
    for kind, value in phones:
        main = " · " + _("main phone") if value == client.main_phone else ""
        lines.append(f"{kind}: {fmt.phone(value)}{main}")
    if not phones:
        lines.append(_("The client has no phone number."))
        return screens.Screen("\n".join(lines), keyboard([_to_card(cid)]))
    lines += ["", _("Tap the number to call, then tell how it went:")]
    markup = keyboard(
        [
            (_("✅ Reached"), CallResult(client_id=cid, outcome="reached")),
            (_("📵 No answer"), CallResult(client_id=cid, outcome="no_answer")),
        ],
        [(_("⏰ Call back in 1 h"), CallResult(client_id=cid, outcome="cb1"))],
        [(_("⏰ Call back in 3 h"), CallResult(client_id=cid, outcome="cb3"))],
        [(_("⏰ Call back tomorrow at 10:00"), CallResult(client_id=cid, outcome="cbt"))],
        [_to_card(cid)],
    )
    return screens.Screen("\n".join(lines), markup)


def call_back_time(choice: str, tz: ZoneInfo, now: datetime | None = None) -> datetime | None:
    """When to call back for a call-back button: in 1 h, in 3 h, tomorrow 10:00 shop time."""
    now = (now or datetime.now(tz)).astimezone(tz)
    if choice == "cb1":
        return now + timedelta(hours=1)
    if choice == "cb3":
        return now + timedelta(hours=3)
    if choice == "cbt":
        return datetime.combine(now.date() + timedelta(days=1), CALL_BACK_TOMORROW, tzinfo=tz)
    return None


async def on_call_result(
    callback: CallbackQuery,
    callback_data: CallResult,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    choice = callback_data.outcome
    outcomes = {"reached": CallOutcome.REACHED, "no_answer": CallOutcome.NO_ANSWER}
    call_back_at = call_back_time(choice, settings.tz)
    outcome = CallOutcome.CALL_BACK if call_back_at is not None else outcomes.get(choice)
    if outcome is None:
        await navigation.refuse(callback, session, staff, reason="malformed", detail=choice)
        return
    if not await _allowed(callback, session, staff, Permission.EVENTS):
        return
    try:
        await messaging.log_call(
            session,
            callback_data.client_id,
            staff,
            outcome,
            call_back_at,
            region=settings.default_region,
        )
    except MessagingRefused as exc:
        await _undo(session, staff)
        await _messaging_refused(callback, session, staff, exc)
        return
    await session.commit()
    await _end(state)
    if outcome is CallOutcome.REACHED:
        note = _("✅ Call logged: reached.")
    elif outcome is CallOutcome.NO_ANSWER:
        note = _("📵 Call logged: no answer. It stays new on the Events tab.")
    else:
        note = _("⏰ Call logged: call back {when}. It stays new on the Events tab.").format(
            when=fmt.when(call_back_at, settings.tz)
        )
    await callback.answer(fmt.cut(fmt.plain(note), 200))
    await _show_card(
        callback, callback_data.client_id, note, session, staff, settings, search_service, state
    )


# --- SMS, e-mail, Telegram ------------------------------------------------------------------


_CHANNEL_ICONS = {"sms": "✉️", "email": "📧", "tg": "💬"}


def _channel_title(channel: str, name: str) -> str:
    title = {
        "sms": _("SMS to {name}"),
        "email": _("E-mail to {name}"),
        "tg": _("Telegram message to {name}"),
    }[channel].format(name=q(name))
    return f"{_CHANNEL_ICONS[channel]} <b>{title}</b>"


def _prompt_screen(
    channel: str, client_id: int, name: str, dialog: dict[str, Any]
) -> screens.Screen:
    cancel = (_("Cancel"), Outgoing(client_id=client_id, action="cancel"))
    head = _channel_title(channel, name)
    if channel == "email" and dialog.get("subject") is None:
        text = _("Send the subject of the e-mail, or tap «{button}» and write the text.").format(
            button=_("Default subject")
        )
        nosubject = (_("Default subject"), Outgoing(client_id=client_id, action="nosubject"))
        return screens.Screen(f"{head}\n{text}", keyboard([nosubject], [cancel]))
    lines = [head]
    if channel == "email":
        lines.append(_("Subject: {subject}").format(subject=q(dialog["subject"])))
        lines.append(_("Now send the text of the e-mail."))
    elif channel == "sms":
        lines.append(_("Send the text of the SMS."))
    else:
        lines.append(_("Send the text of the message."))
    return screens.Screen("\n".join(lines), keyboard([cancel]))


def _preview_screen(
    channel: str, client_id: int, name: str, dialog: dict[str, Any]
) -> screens.Screen:
    lines = [_channel_title(channel, name)]
    if channel == "email":
        lines.append(_("Subject: {subject}").format(subject=q(dialog["subject"])))
    text = dialog["text"]
    lines += ["", q(fmt.cut(text, PREVIEW_CHARS)), ""]
    if channel == "sms":
        lines.append(_("{count} characters.").format(count=len(text)))
    lines.append(_("Send it? To change the text, send another one."))
    markup = keyboard(
        [
            (_("Send"), Outgoing(client_id=client_id, action="send")),
            (_("Cancel"), Outgoing(client_id=client_id, action="cancel")),
        ]
    )
    return screens.Screen("\n".join(lines), markup)


async def on_text(
    message: Message, session: AsyncSession, staff: Staff, state: FSMContext
) -> None:
    """The subject or the text of an SMS, e-mail or Telegram message: shown back to send."""
    dialog = await _live(state, "sms", "email", "tg")
    channel, text = dialog["channel"], message.text or ""
    client = await _load_client(session, dialog["client_id"])
    if client is None:
        await _end(state)
        await message.answer(_("This client is gone."))
        return
    limit = messaging.MAX_SMS if channel == "sms" else messaging.MAX_TELEGRAM
    if channel == "email" and dialog.get("subject") is None:
        text, limit = " ".join(text.split()), messaging.MAX_EMAIL_SUBJECT
    if len(text) > limit:
        prompt = _prompt_screen(channel, client.id, client.name, dialog)
        too_long = _("That is too long: {limit} characters at most.").format(limit=limit)
        await _reprompt(
            message, state, dialog, screens.Screen(f"{too_long}\n{prompt.text}", prompt.markup)
        )
        return
    if channel == "email" and dialog.get("subject") is None:
        dialog["subject"] = text
        await state.set_state(Dialog.email_body)
        screen = _prompt_screen(channel, client.id, client.name, dialog)
    else:
        dialog["text"] = text
        screen = _preview_screen(channel, client.id, client.name, dialog)
    await _reprompt(message, state, dialog, screen)


async def on_outgoing(
    callback: CallbackQuery,
    callback_data: Outgoing,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
    bot: Bot,
    sms_gateway: SmsGateway | None = None,
    smtp: SmtpSettings | None = None,
) -> None:
    action, cid = callback_data.action, callback_data.client_id
    if action == "cancel":
        await _end(state)
        await callback.answer(_("Cancelled."))
        await _show_card(callback, cid, "", session, staff, settings, search_service, state)
        return
    if action not in ("send", "nosubject"):
        await navigation.refuse(callback, session, staff, reason="malformed", detail=action)
        return
    if not await _allowed(callback, session, staff, Permission.EVENTS):
        return
    dialog = await _dialog(state)
    ready = dialog is not None and dialog.get("client_id") == cid and dialog.get("channel")
    if action == "nosubject":
        if not ready or dialog is None or dialog["channel"] != "email" or "text" in dialog:
            await _stale(callback, session, staff, "dialog")
            return
        dialog["subject"] = _("A message from your car service")
        await _save(state, dialog, Dialog.email_body)
        await callback.answer()
        await navigation.show(callback, _prompt_screen("email", cid, dialog["name"], dialog))
        return
    if not ready or dialog is None or not dialog.get("text"):
        await _stale(callback, session, staff, "dialog")
        return
    await _end(state)  # before sending: a second press finds nothing to send
    await callback.answer()
    await session.commit()  # no read transaction held while the message goes out
    channel = dialog["channel"]
    try:
        if channel == "sms":
            outcome = await messaging.send_sms(
                session_factory,
                client_id=cid,
                staff=staff,
                text=dialog["text"],
                gateway=sms_gateway or messaging.RecordingSmsGateway(),
                region=settings.default_region,
            )
        elif channel == "email" and smtp is not None:
            outcome = await messaging.send_email(
                session_factory,
                client_id=cid,
                staff=staff,
                subject=dialog["subject"],
                body=dialog["text"],
                smtp=smtp,
            )
        elif channel == "tg":
            outcome = await _send_telegram(session, bot, cid, staff, dialog["text"])
        else:
            raise MessagingRefused(MessagingProblem.NO_EMAIL, "e-mail is not set up")
    except MessagingRefused as exc:
        await _undo(session, staff)
        screen = screens.Screen(
            _channel_title(channel, dialog["name"]) + "\n" + _messaging_problem(exc),
            keyboard([_to_card(cid)]),
        )
        await navigation.show(callback, screen)
        return
    screen = screens.Screen(
        _channel_title(channel, dialog["name"]) + "\n" + _delivery_text(channel, outcome),
        keyboard(
            [
                _to_card(cid),
                (_("Events"), OpenClient(client_id=cid, tab=ClientTab.EVENTS)),
            ]
        ),
    )
    await navigation.show(callback, screen)


async def _send_telegram(
    session: AsyncSession, bot: Bot, client_id: int, staff: Staff, text: str
) -> DeliveryOutcome:
    """Record the pending event, commit, send, then record how it went."""
    draft = await messaging.prepare_telegram_message(session, client_id, staff, text)
    await session.commit()
    status, error, provider_id = DeliveryStatus.SENT, None, None
    try:
        sent = await bot.send_message(draft.chat_id, draft.text, parse_mode=None)
        provider_id = str(sent.message_id)
    except TelegramAPIError as exc:  # blocked (TelegramForbiddenError), chat gone, network
        status, error = DeliveryStatus.FAILED, (exc.message or type(exc).__name__)
    await messaging.record_delivery(
        session, draft.event_id, status, error=error, provider_id=provider_id, staff=staff
    )
    await session.commit()
    return DeliveryOutcome(draft.event_id, status, str(draft.chat_id), error, provider_id)


def _delivery_text(channel: str, outcome: DeliveryOutcome) -> str:
    to = fmt.phone(outcome.recipient) if channel == "sms" else q(outcome.recipient)
    reason = q(outcome.error or "—")
    if outcome.status is DeliveryStatus.RECORDED:
        return _(
            "📝 No SMS gateway is set up: the SMS to {to} is recorded on the Events tab, not sent."
        ).format(to=to)
    if outcome.status is DeliveryStatus.SENT:
        return {
            "sms": _("✅ SMS sent to {to}."),
            "email": _("✅ E-mail sent to {to}."),
            "tg": _("✅ Delivered to the client's Telegram."),
        }[channel].format(to=to)
    return (
        {
            "sms": _("❌ The SMS to {to} was not sent: {reason}"),
            "email": _("❌ The e-mail to {to} was not sent: {reason}"),
            "tg": _("❌ The Telegram message was not delivered: {reason}"),
        }[channel].format(to=to, reason=reason)
        + "\n"
        + _("The attempt is on the Events tab.")
    )


def _messaging_problem(exc: MessagingRefused) -> str:
    problem = exc.problem
    if problem is MessagingProblem.TOO_LONG:
        limit = re.search(r"\d+", exc.detail)
        return _("That is too long: {limit} characters at most.").format(
            limit=limit.group(0) if limit else "?"
        )
    return {
        MessagingProblem.FORBIDDEN: _("Your role cannot contact clients."),
        MessagingProblem.CLIENT_NOT_FOUND: _("This client is gone."),
        MessagingProblem.CAR_NOT_LINKED: _("This car is not the client's."),
        MessagingProblem.EVENT_NOT_FOUND: _("This event is gone."),
        MessagingProblem.EMPTY: _("The text is empty."),
        MessagingProblem.NO_PHONE: _("The client has no phone number for an SMS."),
        MessagingProblem.BAD_PHONE: _("This is not a phone number."),
        MessagingProblem.NO_EMAIL: _(
            "The client has no e-mail address. Add one to the contacts first."
        ),
        MessagingProblem.BAD_EMAIL: _("This is not an e-mail address."),
        MessagingProblem.NOT_LINKED: _(
            "The client has not linked Telegram with the bot, so there is nowhere to write."
        ),
    }.get(problem, q(str(exc)))


async def _messaging_refused(
    callback: CallbackQuery, session: AsyncSession, staff: Staff, exc: MessagingRefused
) -> None:
    if exc.problem in (MessagingProblem.CLIENT_NOT_FOUND, MessagingProblem.EVENT_NOT_FOUND):
        await _stale(callback, session, staff, exc.problem.value)
    elif exc.problem is MessagingProblem.FORBIDDEN:
        await navigation.refuse(callback, session, staff, reason="forbidden", detail="events")
    else:
        await callback.answer(fmt.plain(_messaging_problem(exc)), show_alert=True)


# --- register a contact ------------------------------------------------------------------


_LOG_DEFAULTS: dict[str, Any] = {
    "channel": "log",
    "event_kind": EventKind.VISIT.value,
    "direction": Direction.INCOMING.value,
    "result": None,
    "follow_up": False,
    "comment": "",
}


def log_form_screen(client_id: int, name: str, form: dict[str, Any]) -> screens.Screen:
    kind = EventKind(form["event_kind"])
    incoming = form["direction"] == Direction.INCOMING.value
    results = _log_results()
    lines = [
        "📝 <b>" + _("Register contact") + f"</b> · {q(name)}",
        _("Kind: {kind}").format(kind=screens.event_kind_name(kind)),
        _("Direction: {direction}").format(direction=_("incoming") if incoming else _("outgoing")),
        _("Result: {result}").format(result=results.get(form["result"] or "", "—")),
        _("Needs follow-up: {answer}").format(answer=_("yes") if form["follow_up"] else _("no")),
        _("Comment: {comment}").format(comment=q(fmt.cut(form["comment"], PREVIEW_CHARS))),
        "",
        _("Send the comment as a message, set the rest with the buttons, then tap Save."),
    ]

    def mark(on: bool) -> str:
        return "✓ " if on else ""

    kinds = [
        (
            mark(k is kind) + screens.event_kind_name(k),
            LogForm(client_id=client_id, field="kind", value=k),
        )
        for k in (
            EventKind.VISIT,
            EventKind.CALL,
            EventKind.NOTE,
            EventKind.SMS,
            EventKind.EMAIL,
            EventKind.TELEGRAM,
        )
    ]
    directions = [
        (
            mark(incoming) + "← " + _("incoming"),
            LogForm(client_id=client_id, field="dir", value="in"),
        ),
        (
            mark(not incoming) + "→ " + _("outgoing"),
            LogForm(client_id=client_id, field="dir", value="out"),
        ),
    ]
    result_buttons = [
        (
            mark(form["result"] == code) + label,
            LogForm(client_id=client_id, field="result", value=code),
        )
        for code, label in results.items()
    ]
    follow = (
        ("☑ " if form["follow_up"] else "☐ ") + _("Needs follow-up"),
        LogForm(client_id=client_id, field="follow"),
    )
    markup = keyboard(
        kinds[:3],
        kinds[3:],
        directions,
        result_buttons[:2],
        result_buttons[2:],
        [follow],
        [
            (_("💾 Save"), LogForm(client_id=client_id, field="save")),
            (_("Cancel"), Outgoing(client_id=client_id, action="cancel")),
        ],
    )
    return screens.Screen("\n".join(lines), markup)


async def on_log_comment(message: Message, state: FSMContext) -> None:
    dialog = await _live(state, "log")
    dialog["comment"] = (message.text or "").strip()
    screen = log_form_screen(dialog["client_id"], dialog["name"], dialog)
    await _reprompt(message, state, dialog, screen)


async def on_log_form(
    callback: CallbackQuery,
    callback_data: LogForm,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    if not await _allowed(callback, session, staff, Permission.EVENTS):
        return
    dialog = await _dialog(state)
    cid, field_, value = callback_data.client_id, callback_data.field, callback_data.value
    if dialog is None or dialog.get("channel") != "log" or dialog.get("client_id") != cid:
        await _stale(callback, session, staff, "dialog")
        return
    if field_ == "kind" and value in {k.value for k in EventKind}:
        dialog["event_kind"] = value
    elif field_ == "dir" and value in {d.value for d in Direction}:
        dialog["direction"] = value
    elif field_ == "result" and value in LOG_RESULTS:
        dialog["result"] = None if dialog.get("result") == value else value
    elif field_ == "follow":
        dialog["follow_up"] = not dialog.get("follow_up")
    elif field_ == "save":
        await _save_log(callback, dialog, session, staff, settings, search_service, state)
        return
    else:
        await navigation.refuse(callback, session, staff, reason="malformed", detail=field_)
        return
    await _save(state, dialog)
    await callback.answer()
    await navigation.show(callback, log_form_screen(cid, dialog["name"], dialog))


async def _save_log(
    callback: CallbackQuery,
    dialog: dict[str, Any],
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    if not dialog.get("comment") and not dialog.get("result"):
        await callback.answer(_("Type a comment or pick a result first."), show_alert=True)
        return
    try:
        await messaging.log_manual_contact(
            session,
            dialog["client_id"],
            staff,
            EventKind(dialog["event_kind"]),
            Direction(dialog["direction"]),
            dialog.get("result"),
            dialog.get("comment") or "",
            follow_up=bool(dialog.get("follow_up")),
        )
    except MessagingRefused as exc:
        await _undo(session, staff)
        await _messaging_refused(callback, session, staff, exc)
        return
    await session.commit()
    await _end(state)
    note = _("✅ Contact registered.")
    if dialog.get("follow_up"):
        note += " " + _("It stays new on the Events tab.")
    await callback.answer(fmt.plain(note))
    await _show_card(
        callback, dialog["client_id"], note, session, staff, settings, search_service, state
    )


# --- shared -----------------------------------------------------------------------------


async def on_not_text(message: Message, state: FSMContext) -> None:
    await _live(state)
    await message.answer(_("Send it as text, please."))


async def _allowed(
    callback: CallbackQuery, session: AsyncSession, staff: Staff, permission: Permission
) -> bool:
    if can(staff, permission):
        return True
    await navigation.refuse(callback, session, staff, reason="forbidden", detail=permission.value)
    return False


async def _undo(session: AsyncSession, staff: Staff) -> None:
    """Roll back a refused change (nothing was written: the services check first), and
    reload the staff member the rollback expired (the refusal is audited in their name)."""
    await session.rollback()
    await session.refresh(staff)


async def _stale(callback: CallbackQuery, session: AsyncSession, staff: Staff, what: str) -> None:
    await navigation.refuse(callback, session, staff, reason="stale", detail=what)


async def _load_client(session: AsyncSession, client_id: int) -> Client | None:
    return await session.get(
        Client, client_id, options=[selectinload(Client.contacts)], populate_existing=True
    )


async def _show_card(
    callback: CallbackQuery,
    client_id: int,
    note: str,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    """The client card (its Events button shows the new count), under ``note``."""
    ctx = navigation.screen_context(session, staff, settings, search_service, state)
    try:
        screen = await screens.render(OpenClient(client_id=client_id), ctx)
    except (screens.Stale, screens.Forbidden):
        screen = screens.Screen(note or _("Cancelled."))
    else:
        if note:
            screen = screens.Screen(f"{note}\n\n{screen.text}", screen.markup)
    await navigation.show(callback, screen)


# --- dialog state ---------------------------------------------------------------------


async def _begin(
    state: FSMContext, step: State, client: Client, callback: CallbackQuery, **values: Any
) -> None:
    data = await state.get_data()
    dialog = {
        "client_id": client.id,
        "name": client.name,
        "nav": (data.get(navigation.NAV) or {}).get("cur"),
        "msg": callback.message.message_id if callback.message else None,
        **values,
    }
    await _save(state, dialog, step)


async def _save(state: FSMContext, dialog: dict[str, Any], step: State | None = None) -> None:
    dialog["at"] = time.time()
    await state.update_data({DIALOG: dialog})
    if step is not None:
        await state.set_state(step)


async def _dialog(state: FSMContext) -> dict[str, Any] | None:
    dialog = (await state.get_data()).get(DIALOG)
    return dict(dialog) if isinstance(dialog, dict) else None


async def _end(state: FSMContext) -> None:
    """Close the dialog; the screen trail and the search context stay."""
    if await state.get_state() is not None:
        await state.set_state(None)
    if (await state.get_data()).get(DIALOG) is not None:
        await state.update_data({DIALOG: None})


async def _live(state: FSMContext, *channels: str) -> dict[str, Any]:
    """The dialog this typed message is for; if the user has moved on (another screen, a
    search) or left it too long, the dialog ends and the message goes on to the search."""
    data = await state.get_data()
    dialog = data.get(DIALOG)
    current = (data.get(navigation.NAV) or {}).get("cur")
    channel = dialog.get("channel", "contact") if isinstance(dialog, dict) else None
    if (
        not isinstance(dialog, dict)
        or dialog.get("nav") != current
        or time.time() - float(dialog.get("at") or 0) > DIALOG_TTL
        or (channels and channel not in channels)
    ):
        await _end(state)
        raise SkipHandler()
    return dict(dialog)


async def _reprompt(
    message: Message, state: FSMContext, dialog: dict[str, Any], screen: screens.Screen
) -> None:
    """Answer typed input with the next step; the previous step's buttons go away."""
    await _retire(message.bot, message.chat.id, dialog.get("msg"))
    sent = await message.answer(screen.text, reply_markup=screen.markup)
    dialog["msg"] = sent.message_id
    await _save(state, dialog)


async def _retire(bot: Bot | None, chat_id: int, message_id: int | None) -> None:
    if bot is None or not message_id:
        return
    with contextlib.suppress(TelegramAPIError):
        await bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id)


__all__ = [
    "CallResult",
    "ContactEdit",
    "Dialog",
    "EventDone",
    "EventsAllDone",
    "LogForm",
    "Outgoing",
    "call_back_time",
    "event_buttons",
    "event_result_name",
    "make_router",
]
