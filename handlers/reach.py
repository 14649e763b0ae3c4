"""What staff are told about a client hearing of something in the bot: told there, or
to call (the delivery drops messages to clients who are not linked, turned the bot off
or blocked it: ``services.notify.client_reach``)."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from services import notify


async def client_told(session: AsyncSession, client_id: int, *, ahead: bool = False) -> str:
    """One sentence; ``ahead``: before the change is made (a confirmation)."""
    if await notify.client_reach(session, client_id) is notify.Reach.IN_BOT:
        return (
            _("The client will be told in the bot.")
            if ahead
            else _("The client is told in the bot.")
        )
    return _("The client is not reachable in the bot: call them.")
