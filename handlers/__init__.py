"""Thin aiogram routers, one per feature, and the access filters they share.

Each feature module has ``make_router() -> Router`` returning a *new* router: a router can
belong to one dispatcher only, and tests build several. ``bot.app.ROUTERS`` includes them
in order. A router sets its access filter once (``router.message.filter(IsStaff())``); a
callback press re-checks it too, since ``staff`` is reloaded for every update.
"""

from __future__ import annotations

from typing import Any

from aiogram import Router
from aiogram.filters import Filter
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.types import CallbackQuery, TelegramObject
from aiogram.utils.magic_filter import MagicFilter

from storage.models import Client, Role, Staff

ONLY_READS = "only_reads"
"""The flag of a handler that only reads (``flags={ONLY_READS: True}``): a search, a
screen. It goes on in the staff check's transaction of reads (``storage.db.begin_reads``)
instead of ending it and beginning its own (``bot.middlewares.EndReadsMiddleware``). A
handler so flagged writes nothing but, at most, one row in one statement (the audit row
of a refused press), which commits on its own."""


class IsStaff(Filter):
    """The update comes from an active staff member (``staff`` in the handler data)."""

    async def __call__(self, event: TelegramObject, staff: Staff | None = None) -> bool:
        return staff is not None


class IsStranger(Filter):
    """Anyone who is neither an active staff member nor a linked client (in a private
    chat): unknown, deactivated, or no user at all."""

    async def __call__(
        self, event: TelegramObject, staff: Staff | None = None, client: Client | None = None
    ) -> bool:
        return staff is None and client is None


class IsClient(Filter):
    """A linked client in their private chat (``client`` from ``ClientMiddleware``); staff
    never are, even when their chat is linked to a client."""

    async def __call__(
        self, event: TelegramObject, staff: Staff | None = None, client: Client | None = None
    ) -> bool:
        return staff is None and client is not None


class HasRole(Filter):
    """An active staff member with one of ``roles``; an admin has every role."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    async def __call__(self, event: TelegramObject, staff: Staff | None = None) -> bool:
        return staff is not None and (staff.role == Role.ADMIN or staff.role in self.roles)


class Magic(Filter):
    """An ``F`` expression checked in the event loop. aiogram runs every filter that is not
    a coroutine in a worker thread (``asyncio.to_thread``): a hand-off per filter and per
    update, for what is an attribute check. Use ``Magic(F.text)`` instead of ``F.text``."""

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: TelegramObject) -> Any:
        return self.magic.resolve(event)


class PressPrefixes(Filter):
    """A router's presses told apart by the prefix of their callback data: one set lookup,
    instead of aiogram unpacking the data once per handler of the router (a pydantic
    model each, and an exception for every handler it is not for). Set by
    :func:`index_presses`."""

    def __init__(self, prefixes: frozenset[str], separator: str) -> None:
        self.prefixes = prefixes
        self.separator = separator

    async def __call__(self, event: TelegramObject) -> bool:
        data = event.data if isinstance(event, CallbackQuery) else None
        return data is not None and data.partition(self.separator)[0] in self.prefixes


def index_presses(router: Router) -> Router:
    """Let ``router`` skip, in one check, the presses none of its handlers takes. Only when
    every press handler of the router takes typed callback data (a router with a handler
    for any press, or with routers of its own, is left as it is); the handlers still
    unpack and check the data themselves."""
    prefixes: set[str] = set()
    separators: set[str] = set()
    for handler in router.callback_query.handlers:
        filters = [f.callback for f in handler.filters or ()]
        typed = [f for f in filters if isinstance(f, CallbackQueryFilter)]
        if not typed:
            return router
        prefixes.add(typed[0].callback_data.__prefix__)
        separators.add(typed[0].callback_data.__separator__)
    if prefixes and len(separators) == 1 and not router.sub_routers:
        router.callback_query.filter(PressPrefixes(frozenset(prefixes), separators.pop()))
    return router


__all__ = [
    "HasRole",
    "IsClient",
    "IsStaff",
    "IsStranger",
    "Magic",
    "PressPrefixes",
    "index_presses",
]
