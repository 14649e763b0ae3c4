"""The Bot API session: requests without files go as one JSON body.

aiogram's :class:`AiohttpSession` sends every request as a form: the text and the keyboard
(itself a JSON string) are percent-encoded byte by byte in Python, which for a screen of
Russian text costs more than the rest of sending it (``docs/performance.md``). The Bot API
takes ``application/json`` for every method except file uploads
(https://core.telegram.org/bots/api#making-requests), so requests without a file go as
JSON; those with one (documents, photos) still go as aiogram's multipart form. Only the
body changes: aiogram's own ``make_request`` sends it and reads the answer.

The method is dumped without its unset (``None``) fields: aiogram's ``prepare_value`` drops
every ``None`` anyway, but only after walking it in Python, and a keyboard's button has a
dozen fields of which one or two are set (about a third of building a screen's body).
"""

from __future__ import annotations

import json
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods import TelegramMethod
from aiohttp import BytesPayload, FormData


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class JsonBodySession(AiohttpSession):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("json_dumps", _dumps)
        super().__init__(**kwargs)

    def build_form_data(self, bot: Bot, method: TelegramMethod[Any]) -> Any:
        """The request's body: JSON, or aiogram's form when it carries a file. The same
        values as aiogram's own form: ``prepare_value`` resolves the bot's defaults, files,
        dates and enums and drops ``None``, which the dump has already left out."""
        files: dict[str, Any] = {}
        body: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False, exclude_none=True).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared is not None:
                body[key] = prepared
        if files:
            form: FormData = super().build_form_data(bot, method)
            return form
        return BytesPayload(self.json_dumps(body).encode(), content_type="application/json")
