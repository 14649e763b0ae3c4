"""How the routers are put together: filters that stay in the event loop, and the gates that
let through to a feature router only the events one of its handlers could take."""

from __future__ import annotations

import itertools
import re
from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Chat, Message, User

from bot.app import ROUTERS
from handlers import Gate, HasRole, IsClient, IsStaff, IsStranger, Magic, gate
from handlers.callbacks import OpenCar, OpenClient
from storage.models import Client, Role, Staff


def test_no_filter_is_a_plain_function():
    """aiogram runs a filter that is not a coroutine in a worker thread: a thread hand-off
    per update for every such filter on the way (``handlers.Magic`` instead of ``F``)."""
    plain = [
        (router.name, name, f.callback)
        for make in ROUTERS
        for router in [make()]
        for name, observer in router.observers.items()
        for handler in [observer._handler, *observer.handlers]
        for f in handler.filters or ()
        if not f.awaitable
    ]
    assert plain == []


def _press(data: str | None) -> CallbackQuery:
    user = User(id=1, is_bot=False, first_name="A")
    return CallbackQuery(id="1", from_user=user, chat_instance="x", data=data)


def _message(text: str | None = None, caption: str | None = None) -> Message:
    user = User(id=1, is_bot=False, first_name="A")
    chat = Chat(id=1, type="private")
    return Message(
        message_id=1, date=datetime.now(), chat=chat, from_user=user, text=text, caption=caption
    )


class Ask(StatesGroup):
    name = State()
    phone = State()


def test_a_router_of_typed_presses_lets_through_only_its_prefixes():
    router = Router()
    router.callback_query.register(lambda c: None, OpenClient.filter())
    router.callback_query.register(lambda c: None, OpenCar.filter())
    gated = gate(router)
    assert isinstance(gated, Gate)
    assert gated.admits("callback_query", _press(OpenClient(client_id=5).pack()), {})
    assert gated.admits("callback_query", _press(OpenCar(car_id=5).pack()), {})
    assert not gated.admits("callback_query", _press("zz:1"), {})
    assert not gated.admits("callback_query", _press(""), {})
    assert not gated.admits("callback_query", _press(None), {})
    assert not gated.admits("message", _message("/start"), {})  # no message handler


def test_a_router_with_a_handler_for_any_press_lets_every_press_through():
    router = Router()
    router.callback_query.register(lambda c: None, OpenClient.filter())
    router.callback_query.register(lambda c: None)  # stale and forged presses: any data
    gated = gate(router)
    assert isinstance(gated, Gate)
    assert gated.admits("callback_query", _press("zz:1"), {})


def test_a_router_of_dialogs_and_commands_lets_through_their_states_and_commands():
    router = Router()
    router.message.register(lambda m: None, StateFilter(Ask.name), Magic(F.text))
    router.message.register(lambda m: None, StateFilter(Ask), Magic(F.contact))
    router.message.register(lambda m: None, Command("Tires"))
    router.message.register(lambda m: None, CommandStart())
    gated = gate(router)
    assert isinstance(gated, Gate)

    def admits(message: Message, state: str | None = None) -> bool:
        return gated.admits("message", message, {"raw_state": state})

    assert admits(_message("н123ар"), Ask.name.state)
    assert admits(_message("н123ар"), Ask.phone.state)  # the whole group
    assert not admits(_message("н123ар"))
    assert not admits(_message("н123ар"), "Other:state")
    assert admits(_message("/tires"))
    assert admits(_message("/TIRES 205/55"))  # the filter decides on the case
    assert admits(_message("/tires@shop_bot"))
    assert admits(_message("/start invite-token"))
    assert admits(_message(caption="/tires"))
    assert not admits(_message("/filters"))
    assert not admits(_message("tires"))
    assert not admits(_message())  # a photo, a sticker


def test_a_router_with_a_message_handler_for_anything_lets_every_message_through():
    for last in (None, StateFilter(None), StateFilter("*"), Command(re.compile("x.*"))):
        router = Router()
        router.message.register(lambda m: None, Command("tires"))
        router.message.register(lambda m: None, *([last] if last is not None else []))
        gated = gate(router)
        assert isinstance(gated, Gate)
        assert gated.admits("message", _message("hello"), {"raw_state": None}), last


def test_a_router_for_one_audience_turns_away_the_others():
    staff = Staff(telegram_id=1, name="A", role=Role.MASTER, active=True)
    client = Client(name="C")
    router = Router()
    router.message.filter(IsClient())
    router.message.register(lambda m: None)
    router.callback_query.filter(IsStaff(), HasRole(Role.CASHIER))
    router.callback_query.register(lambda c: None)
    gated = gate(router)
    assert isinstance(gated, Gate)

    def admits(kind: str, staff: Staff | None, client: Client | None) -> bool:
        event = _message("hello") if kind == "message" else _press("x")
        return gated.admits(kind, event, {"raw_state": None, "staff": staff, "client": client})

    assert admits("message", None, client)
    assert not admits("message", staff, client)  # staff never are clients
    assert not admits("message", None, None)
    assert not admits("callback_query", staff, None)  # a master, not a cashier
    cashier = Staff(telegram_id=2, name="B", role=Role.CASHIER, active=True)
    assert admits("callback_query", cashier, None)
    assert not IsStranger().holds(cashier, None)


def test_a_router_of_magic_filters_lets_through_what_one_of_its_handlers_would_check():
    router = Router()
    router.message.register(lambda m: None, Magic(F.successful_payment))
    router.message.register(lambda m: None, Magic(F.text), Magic(F.text.startswith("#")))
    router.message.register(lambda m: None, Command("tires"))
    gated = gate(router)
    assert isinstance(gated, Gate) and gated.messages is not None

    def admits(message: Message) -> bool:
        return gated.admits("message", message, {"raw_state": "Other:state"})

    assert admits(_message("#42"))
    assert admits(_message("/tires"))
    assert not admits(_message("42"))
    assert not admits(_message())


def test_a_router_with_routers_of_its_own_is_not_gated():
    router = Router()
    router.include_router(Router())
    assert gate(router) is router


def _corpus() -> tuple[list[str | None], list[Message], list[CallbackQuery]]:
    gates = [g for make in ROUTERS for g in [gate(make())] if isinstance(g, Gate)]
    states: list[str | None] = [None, "Other:state"]
    commands = ["/unknown", "/start", "/start token", "/help", "/Lang"]
    prefixes = ["zz", ""]
    for g in gates:
        if g.messages is not None:
            states += sorted(g.messages.states)
            commands += [f"/{c}" for c in sorted(g.messages.commands)]
            commands += [f"/{c} some args" for c in sorted(g.messages.commands)]
        if g.presses is not None:
            prefixes += sorted(g.presses.prefixes)
    texts = [*commands, "н123ар", "Иванов", "1500", "12"]
    messages = [_message(t) for t in texts] + [_message(caption="/help"), _message()]
    presses = [_press(f"{p}:1:2") for p in prefixes] + [_press(p) for p in prefixes]
    return states, messages, presses


AUDIENCES = {
    "admin": (Staff(telegram_id=1, name="A", role=Role.ADMIN, active=True), None),
    "master": (Staff(telegram_id=2, name="M", role=Role.MASTER, active=True), None),
    "client": (None, Client(name="C")),
    "stranger": (None, None),
}


async def test_a_gate_never_turns_away_what_a_handler_of_its_router_would_take():
    """Whatever the gate of a feature router turns away, no handler of the router (its own
    filters and the router's) would have taken, whoever sent it: the gate only saves
    aiogram the walk."""
    states, messages, presses = _corpus()
    async with Bot("123456:gate-test") as bot:
        for make in ROUTERS:
            gated = gate(make())
            if not isinstance(gated, Gate):
                continue
            router = gated.inner
            for kind, events in (("message", messages), ("callback_query", presses)):
                observer = router.observers[kind]
                for event, state, (who, (staff, client)) in itertools.product(
                    events, states, AUDIENCES.items()
                ):
                    data = {"bot": bot, "raw_state": state, "staff": staff, "client": client}
                    if gated.admits(kind, event, data):
                        continue
                    allowed, _ = await observer._handler.check(event, **data)
                    for handler in observer.handlers if allowed else ():
                        taken, _ = await handler.check(event, **data)
                        assert not taken, (router.name, handler.callback.__name__, event, who)


def test_a_staff_text_reaches_only_the_routers_that_could_take_it():
    """What the gates are for: a staff member's search text walks only the search router
    and those that take any message (fewer would be a gate that turns away too much, which
    the test above catches)."""
    staff, client = AUDIENCES["master"]
    data = {"raw_state": None, "staff": staff, "client": client}
    walked = [
        g.inner.name if isinstance(g, Gate) else g.name
        for make in ROUTERS
        for g in [gate(make())]
        if not isinstance(g, Gate) or g.admits("message", _message("н123ар"), data)
    ]
    assert "search" in walked
    assert not {"client", "strangers", "linking", "telegram-payments"} & set(walked), walked
