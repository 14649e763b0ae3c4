"""Thin aiogram routers, one per feature, and the access filters they share.

Each feature module has ``make_router() -> Router`` returning a *new* router: a router can
belong to one dispatcher only, and tests build several. ``bot.app.ROUTERS`` includes them
in order. A router sets its access filter once (``router.message.filter(IsStaff())``); a
callback press re-checks it too, since ``staff`` is reloaded for every update.
"""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import TelegramObject
from aiogram.utils.magic_filter import MagicFilter

from storage.models import Client, Role, Staff


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


__all__ = ["HasRole", "IsClient", "IsStaff", "IsStranger", "Magic"]
