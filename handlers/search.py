"""Search: whatever a staff member types, a shared contact, and the seed's three boxes.

This router is included last (``bot.app.ROUTERS``): any text no other handler took is a
search. One result opens its card at once; more come as buttons, a page at a time.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import ONLY_READS, IsStaff, Magic
from handlers.callbacks import FilterToggle, OpenCar, OpenClient, SearchPage
from handlers.navigation import reset, screen_context, trail
from handlers.screens import PAGE, Forbidden, Screen, Stale, render, search_results
from services.access import Permission, can
from services.filters import ClientFilter
from services.search import MAX_QUERY_CHARS, Box, Problem, SearchService
from storage.db import begin_reads
from storage.models import Staff

BOX_COMMANDS = {"client": Box.CLIENT, "phone": Box.CONTACT, "car": Box.CAR}


def make_router() -> Router:
    router = Router(name="search")
    router.message.filter(IsStaff())
    router.message.register(show_filters, Command("filters"))
    reads = {ONLY_READS: True}
    router.message.register(search_box, Command(*BOX_COMMANDS), flags=reads)
    router.message.register(search_contact, Magic(F.contact), flags=reads)
    router.message.register(unknown_command, Magic(F.text.startswith("/")))
    router.message.register(search_text, Magic(F.text), flags=reads)
    return router


async def search_text(
    message: Message,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    await run_search(
        message, message.text or "", Box.ANY, session, staff, settings, search_service, state
    )


async def search_box(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    box = BOX_COMMANDS[command.command]
    if not (command.args or "").strip():
        await message.answer(
            {
                Box.CLIENT: _("Send /client and part of the name or the discount card number."),
                Box.CONTACT: _("Send /phone and part of the phone number, e-mail or address."),
                Box.CAR: _("Send /car and part of the plate, VIN or body number."),
            }[box]
        )
        return
    await run_search(
        message, command.args or "", box, session, staff, settings, search_service, state
    )


async def search_contact(
    message: Message,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    """A shared contact is the seed's "current call": search by its phone."""
    phone = message.contact.phone_number if message.contact else ""
    await run_search(message, phone, Box.CONTACT, session, staff, settings, search_service, state)


async def unknown_command(message: Message) -> None:
    await message.answer(_("I don't know this command. /help shows what I can do."))


async def show_filters(
    message: Message,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    ctx = screen_context(session, staff, settings, search_service, state)
    start = FilterToggle(flt="")
    screen = await render(start, ctx)
    await reset(state, start)
    await message.answer(screen.text, reply_markup=screen.markup)


async def run_search(
    message: Message,
    text: str,
    box: Box,
    session: AsyncSession,
    staff: Staff,
    settings: Settings,
    search_service: SearchService,
    state: FSMContext,
) -> None:
    if not can(staff, Permission.SEARCH):
        await message.answer(_("Your role cannot search."))
        return
    if len(text) > MAX_QUERY_CHARS:
        await message.answer(
            _("That is too long to search for: {limit} characters at most.").format(
                limit=MAX_QUERY_CHARS
            )
        )
        return
    data = await state.get_data()
    filters = frozenset(ClientFilter(f) for f in data.get("filters", []))
    ctx = screen_context(session, staff, settings, search_service, state)
    await begin_reads(session)  # a search and the card it may open only read
    # The first page of the search screen, so that the screen is not searched again.
    result = await search_service.search(
        session, text, box=box, filters=filters, ctx=ctx.filter_context(), limit=PAGE, joined=True
    )
    if result.problem is not None:
        await message.answer(
            _("Type part of a plate, VIN, phone or name.")
            if result.problem in (Problem.EMPTY, Problem.NOTHING_TO_SEARCH)
            else _("That is too long to search for: {limit} characters at most.").format(
                limit=MAX_QUERY_CHARS
            )
        )
        return
    target: SearchPage | OpenClient | OpenCar = SearchPage(page=0)
    if result.clients_total + result.cars_total == 1:
        # One result: straight to its card.
        target = (
            OpenClient(client_id=result.clients[0].id)
            if result.clients
            else OpenCar(car_id=result.cars[0].id)
        )
        try:
            screen = await render(target, ctx)
        except (Forbidden, Stale):  # pragma: no cover - found a moment ago, allowed by role
            screen = Screen(_("Nothing found."))
    else:
        screen = search_results(result, filters, 0)
    # The search and a new trail of screens, in one write to the FSM storage.
    await state.update_data({"search": {"q": text, "box": box.value}, **trail(target)})
    await message.answer(screen.text, reply_markup=screen.markup)
