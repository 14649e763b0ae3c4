"""Thin aiogram routers, one per feature, and the access filters they share.

Each feature module has ``make_router() -> Router`` returning a *new* router: a router can
belong to one dispatcher only, and tests build several. ``bot.app.ROUTERS`` includes them
in order. A router sets its access filter once (``router.message.filter(IsStaff())``); a
callback press re-checks it too, since ``staff`` is reloaded for every update.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from inspect import isclass
from typing import Any

from aiogram import Router
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.dispatcher.event.handler import FilterObject
from aiogram.dispatcher.event.telegram import TelegramEventObserver
from aiogram.filters import Command, Filter, StateFilter
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message, TelegramObject
from aiogram.utils.magic_filter import MagicFilter

from storage.models import Client, Role, Staff

ONLY_READS = "only_reads"
"""The flag of a handler that only reads (``flags={ONLY_READS: True}``): a search, a
screen. It goes on in the staff check's transaction of reads (``storage.db.begin_reads``)
instead of ending it and beginning its own (``bot.middlewares.EndReadsMiddleware``). A
handler so flagged writes nothing but, at most, one row in one statement (the audit row
of a refused press), which commits on its own."""


class Audience(Filter):
    """A filter on who sent the update, decided by ``staff`` and ``client`` alone (set for
    every update by the outer middlewares, ``bot.middlewares``): as a router's own filter
    (``router.message.filter(IsStaff())``) its gate checks it before aiogram walks the
    router, so a staff member's update passes the clients' and strangers' routers at the
    cost of a call."""

    @abstractmethod
    def holds(self, staff: Staff | None, client: Client | None) -> bool: ...

    async def __call__(
        self, event: TelegramObject, staff: Staff | None = None, client: Client | None = None
    ) -> bool:
        return self.holds(staff, client)


class IsStaff(Audience):
    """The update comes from an active staff member (``staff`` in the handler data)."""

    def holds(self, staff: Staff | None, client: Client | None) -> bool:
        return staff is not None


class IsStranger(Audience):
    """Anyone who is neither an active staff member nor a linked client (in a private
    chat): unknown, deactivated, or no user at all."""

    def holds(self, staff: Staff | None, client: Client | None) -> bool:
        return staff is None and client is None


class IsClient(Audience):
    """A linked client in their private chat (``client`` from ``ClientMiddleware``); staff
    never are, even when their chat is linked to a client."""

    def holds(self, staff: Staff | None, client: Client | None) -> bool:
        return staff is None and client is not None


class HasRole(Audience):
    """An active staff member with one of ``roles``; an admin has every role."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    def holds(self, staff: Staff | None, client: Client | None) -> bool:
        return staff is not None and (staff.role == Role.ADMIN or staff.role in self.roles)


class Magic(Filter):
    """An ``F`` expression checked in the event loop. aiogram runs every filter that is not
    a coroutine in a worker thread (``asyncio.to_thread``): a hand-off per filter and per
    update, for what is an attribute check. Use ``Magic(F.text)`` instead of ``F.text``."""

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: TelegramObject) -> Any:
        return self.magic.resolve(event)


class Gate(Router):
    """A feature router behind a check that tells, before aiogram does any of its work for
    the router, whether any of its handlers could take the event: an event from someone
    the router's own filter turns away (an :class:`Audience`: staff, clients, strangers), a
    message in none of its dialogs' states and none of its commands and failing its other
    handlers' ``Magic`` filters, a press with none of its callback prefixes, an event of a
    kind it has no handler for. aiogram walks every router in turn until one
    takes the event, and each router it walks costs about as much as a handler does
    (closures, the event's data copied three times, the middlewares wrapped): before the
    gates, a search message spent about a quarter of its CPU getting past the twenty routers
    before the search router (docs/performance.md). Made by :func:`gate`.

    The check is only ever a necessary condition, read off the handlers' own filters; an
    event it lets through goes through the router exactly as before."""

    def __init__(self, router: Router) -> None:
        super().__init__(name=f"gate:{router.name}")
        self.inner = router
        self.include_router(router)  # for the parent chain: the dispatcher's middlewares
        self.kinds = frozenset(
            kind for kind, observer in router.observers.items() if observer.handlers
        )
        self.audiences = {
            kind: audiences
            for kind, observer in router.observers.items()
            # the observer's own filters (``observer.filter(...)``): aiogram keeps them on
            # a handler object of its own
            if (audiences := _audiences(observer._handler.filters))
        }
        self.messages = _MessageIndex.of(router.message)
        self.presses = _PressIndex.of(router.callback_query)

    def admits(self, update_type: str, event: TelegramObject, data: dict[str, Any]) -> bool:
        if update_type not in self.kinds:
            return False
        audiences = self.audiences.get(update_type)
        if audiences is not None:
            staff, client = data.get("staff"), data.get("client")
            if not all(a.holds(staff, client) for a in audiences):
                return False
        if update_type == "message" and self.messages is not None:
            return self.messages.admits(event, data.get("raw_state"))
        if update_type == "callback_query" and self.presses is not None:
            return self.presses.admits(event)
        return True

    async def propagate_event(self, update_type: str, event: TelegramObject, **kwargs: Any) -> Any:
        if not self.admits(update_type, event, kwargs):
            return UNHANDLED
        return await self.inner.propagate_event(update_type, event, **kwargs)


def _audiences(filters: list[FilterObject] | None) -> tuple[Audience, ...]:
    return tuple(f.callback for f in filters or () if isinstance(f.callback, Audience))


def gate(router: Router) -> Router:
    """``router`` behind a :class:`Gate`; a router with routers of its own (whose handlers
    the gate would have to read too) is left as it is."""
    return router if router.sub_routers else Gate(router)


@dataclass(frozen=True)
class _PressIndex:
    """The callback prefixes of a router whose every press handler takes typed callback
    data (aiogram would otherwise unpack the data once per handler: a pydantic model each,
    and an exception for every handler it is not for)."""

    prefixes: frozenset[str]
    separator: str

    @classmethod
    def of(cls, observer: TelegramEventObserver) -> _PressIndex | None:
        prefixes: set[str] = set()
        separators: set[str] = set()
        for handler in observer.handlers:
            typed = [
                f.callback
                for f in handler.filters or ()
                if isinstance(f.callback, CallbackQueryFilter)
            ]
            if not typed:
                return None  # a handler for any press
            prefixes.add(typed[0].callback_data.__prefix__)
            separators.add(typed[0].callback_data.__separator__)
        if len(separators) != 1:
            return None
        return cls(frozenset(prefixes), separators.pop())

    def admits(self, event: TelegramObject) -> bool:
        data = event.data if isinstance(event, CallbackQuery) else None
        return data is not None and data.partition(self.separator)[0] in self.prefixes


@dataclass(frozen=True)
class _MessageIndex:
    """The dialog states and the commands of a router whose every message handler waits
    for a state, takes a command or has ``Magic`` filters (``guards``: each such handler's,
    checked by the gate as the handler would: pure attribute checks of the message). A
    handler with none of them, or with a command by pattern, leaves the router
    unindexed."""

    states: frozenset[str]
    commands: frozenset[str]  # casefolded, without the prefix
    prefixes: str
    guards: tuple[tuple[Magic, ...], ...] = ()

    @classmethod
    def of(cls, observer: TelegramEventObserver) -> _MessageIndex | None:
        states: set[str] = set()
        commands: set[str] = set()
        prefixes = ""
        guards: list[tuple[Magic, ...]] = []
        for handler in observer.handlers:
            filters = [f.callback for f in handler.filters or ()]
            state = next((f for f in filters if isinstance(f, StateFilter)), None)
            command = next((f for f in filters if isinstance(f, Command)), None)
            magics = tuple(f for f in filters if isinstance(f, Magic))
            if state is not None:
                names = _state_names(state)
                if names is None or None in names:  # "*", or also with no state at all
                    return None
                states.update(n for n in names if n is not None)
            elif command is not None:
                if not all(isinstance(c, str) for c in command.commands):
                    return None
                commands.update(str(c).casefold() for c in command.commands)
                prefixes += command.prefix
            elif magics:
                guards.append(magics)
            else:
                return None
        return cls(frozenset(states), frozenset(commands), prefixes, tuple(guards))

    def admits(self, event: TelegramObject, raw_state: str | None) -> bool:
        if raw_state is not None and raw_state in self.states:
            return True
        if any(all(m.magic.resolve(event) for m in magics) for magics in self.guards):
            return True
        if not self.commands or not isinstance(event, Message):
            return False
        text = event.text or event.caption
        if not text or text[0] not in self.prefixes:
            return False
        word = text.split(maxsplit=1)[0]
        return word[1:].partition("@")[0].casefold() in self.commands


def _state_names(state_filter: StateFilter) -> set[str | None] | None:
    """The raw states a StateFilter lets through (None among them: no state at all), or
    None when it lets every event through ("*")."""
    names: set[str | None] = set()
    for allowed in state_filter.states:
        if allowed is None or isinstance(allowed, str):
            if allowed == "*":
                return None
            names.add(allowed)
        elif isinstance(allowed, State):
            if allowed.state == "*":
                return None
            names.add(allowed.state)
        else:
            group = type(allowed) if isinstance(allowed, StatesGroup) else allowed
            if not (isclass(group) and issubclass(group, StatesGroup)):
                return None  # something else that decides: let everything through
            names.update(group.__all_states_names__)
    return names


__all__ = [
    "Audience",
    "Gate",
    "HasRole",
    "IsClient",
    "IsStaff",
    "IsStranger",
    "Magic",
    "gate",
]
