"""How each kind of notification reads: one renderer per ``services.outbox.Kind``.

The delivery worker (``bot.delivery``) loads a claimed row, sets the recipient's language
and calls the kind's renderer with a session. A renderer re-reads what it tells about and
returns ``None`` when that is no longer true (a booking cancelled since, an event already
processed): the row is dropped, not sent. ``digest_line`` is the one line the message
takes in a digest, when several digestible notifications wait for one chat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiogram.types import InlineKeyboardMarkup
from sqlalchemy.ext.asyncio import AsyncSession

from services.outbox import Kind
from storage.models import Notification


@dataclass(frozen=True)
class Rendered:
    text: str
    markup: InlineKeyboardMarkup | None = None
    digest_line: str | None = None


Renderer = Callable[[AsyncSession, Notification], Awaitable[Rendered | None]]
RENDERERS: dict[str, Renderer] = {}


def renders(kind: Kind) -> Callable[[Renderer], Renderer]:
    """Register the renderer of ``kind`` (one per kind)."""

    def register(renderer: Renderer) -> Renderer:
        if kind.value in RENDERERS:
            raise RuntimeError(f"two renderers for {kind.value}")
        RENDERERS[kind.value] = renderer
        return renderer

    return register
