"""A local stand-in for the Telegram Bot API, for end-to-end tests.

``FakeBotAPI`` is a real aiohttp server on 127.0.0.1 that answers the real aiogram client the
way Telegram does: ``POST /bot<token>/<method>`` with a form, multipart or JSON body, and
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ..., "description": ...}``.

What it plays:

* long polling: ``getUpdates`` returns the queued updates from ``offset`` on, waits up to
  ``timeout`` seconds for one to arrive (on a condition, no busy loop) and drops the ones
  an offset confirms; while a webhook is set it answers 409 like Telegram, and delivers
  the queue to the webhook instead (with the secret header);
* the chats: ``sendMessage`` numbers messages per chat, ``editMessageText``,
  ``editMessageReplyMarkup`` and ``deleteMessage`` change them, and :meth:`FakeBotAPI.chat`
  shows what the user now sees. Telegram's common refusals are played too: HTML that does
  not parse, an empty or too long text, callback data over 64 bytes, an edit that changes
  nothing, a message that is not there, a chat the bot never saw, a callback query answered
  twice, a wrong token;
* fault injection: :meth:`FakeBotAPI.script` queues responses per method (429 with
  ``retry_after``, 500, 403 blocked, 400 migrated to a supergroup, a delay, ...).

Every call is recorded when answered (:class:`Call`); :meth:`FakeBotAPI.wait_for` waits on a
condition until the calls a test expects were made, :meth:`FakeBotAPI.wait_until` for any
condition (``api.in_progress["sendMessage"]`` counts calls received but not yet answered),
:meth:`FakeBotAPI.wait_polling` until the bot sits in a long poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

BOT_NAME = "Clients & Cars"
BOT_USERNAME = "ccbot_test_bot"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64

# Parameters that are text even when they look like JSON ("123", "true").
_STRING_PARAMS = frozenset(
    "text caption title description short_description payload url secret_token"
    " callback_query_id pre_checkout_query_id shipping_query_id inline_message_id language_code"
    " parse_mode provider_token currency start_parameter error_message name emoji question"
    " business_connection_id message_effect_id ip_address".split()
)

# Telegram's HTML: https://core.telegram.org/bots/api#html-style
_HTML_TAGS = frozenset(
    "b strong i em u ins s strike del span tg-spoiler a tg-emoji code pre blockquote".split()
)
_NAMED_ENTITIES = frozenset({"lt", "gt", "amp", "quot"})
_TAG_RE = re.compile(r"</?([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+(?:\s*=\s*\"[^\"]*\")?)*)\s*/?>")
_ENTITY_RE = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


# --- responses scripted by a test ---------------------------------------------------------


@dataclass
class Scripted:
    """One scripted answer to the next matching call of a method."""

    status: int = 200
    description: str | None = None
    parameters: dict[str, Any] | None = None
    delay: float = 0.0  # seconds before answering (then the error, or the normal answer)
    result: Any = None  # with status 200: this result instead of the normal one
    when: Callable[[dict[str, Any]], bool] | None = None  # only calls whose params match

    @property
    def is_error(self) -> bool:
        return self.status != 200


def retry_after(seconds: int) -> Scripted:
    """429 Too Many Requests, as Telegram sends when the bot floods."""
    return Scripted(
        429,
        f"Too Many Requests: retry after {seconds}",
        {"retry_after": seconds},
    )


def server_error(description: str = "Internal Server Error") -> Scripted:
    return Scripted(500, description)


def blocked() -> Scripted:
    return Scripted(403, "Forbidden: bot was blocked by the user")


def bad_request(description: str) -> Scripted:
    return Scripted(400, f"Bad Request: {description}")


def migrated(new_chat_id: int) -> Scripted:
    return Scripted(
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        {"migrate_to_chat_id": new_chat_id},
    )


def delayed(seconds: float) -> Scripted:
    """Answer normally, but only after ``seconds`` (a slow network, a slow Telegram)."""
    return Scripted(delay=seconds)


class ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters


# --- what was called ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request the bot made, with the answer it got."""

    method: str  # as the client spelled it: "sendMessage"
    params: dict[str, Any]
    at: float  # time.monotonic()
    wall: float  # time.time()
    status: int
    response: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result")

    @property
    def text(self) -> str | None:
        """The text as the user would read it (tags stripped, entities decoded)."""
        value = self.params.get("text")
        if value is None:
            return None
        return plain(str(value)) if self.params.get("parse_mode") == "HTML" else str(value)

    def __repr__(self) -> str:
        brief = {k: v for k, v in self.params.items() if k not in ("reply_markup",)}
        return f"<Call {self.method} {self.status} {brief}>"


@dataclass
class Delivery:
    """One webhook delivery attempt."""

    update_id: int
    status: int | None  # None: the connection failed
    error: str | None = None


@dataclass
class ChatMessage:
    """A message as it now stands in a chat."""

    message_id: int
    chat_id: int
    from_bot: bool
    date: int
    text: str | None
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    edits: int = 0

    @property
    def plain_text(self) -> str | None:
        if self.text is None:
            return None
        return plain(self.text) if self.parse_mode == "HTML" else self.text

    @property
    def buttons(self) -> list[list[dict[str, Any]]]:
        return list((self.reply_markup or {}).get("inline_keyboard", []))

    def button(self, text: str) -> dict[str, Any]:
        """The inline button whose text contains ``text`` (AssertionError when none)."""
        for row in self.buttons:
            for button in row:
                if text in button.get("text", ""):
                    return button
        raise AssertionError(f"no button {text!r} in {self.buttons}")


def plain(text: str) -> str:
    """Telegram's HTML as the user reads it."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def html_problem(text: str) -> str | None:
    """Why Telegram would refuse ``text`` with parse_mode=HTML, or None."""
    stack: list[str] = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch == "<":
            match = _TAG_RE.match(text, pos)
            offset = len(text[:pos].encode("utf-8"))
            if match is None:
                return f"Unsupported start tag at byte offset {offset}"
            name = match.group(1).lower()
            closing = text[pos + 1] == "/"
            if name not in _HTML_TAGS:
                kind = "end" if closing else "start"
                return f'Unsupported {kind} tag "{name}" at byte offset {offset}'
            if closing:
                if not stack or stack[-1] != name:
                    expected = f'"</{stack[-1]}>"' if stack else "nothing"
                    return (
                        f"Unmatched end tag at byte offset {offset}, expected {expected}, "
                        f'found "</{name}>"'
                    )
                stack.pop()
            elif not match.group(0).endswith("/>"):
                stack.append(name)
            pos = match.end()
        elif ch == "&":
            match = _ENTITY_RE.match(text, pos)
            if match is not None:
                ref = match.group(1)
                if not ref.startswith("#") and ref.lower() not in _NAMED_ENTITIES:
                    offset = len(text[:pos].encode("utf-8"))
                    return f'Unsupported HTML entity "&{ref};" at byte offset {offset}'
                pos = match.end()
            else:
                pos += 1
        else:
            pos += 1
    if stack:
        return f'Can\'t find end tag corresponding to start tag "{stack[-1]}"'
    return None


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --- the server -------------------------------------------------------------------------------


class FakeBotAPI:
    """The Bot API for one bot token, on a random free port of 127.0.0.1.

    Use as ``async with FakeBotAPI(token) as api:`` (or ``await api.start()`` /
    ``await api.close()``) and point the bot at ``api.base_url``.
    """

    def __init__(
        self,
        token: str,
        *,
        bot_id: int | None = None,
        strict_chats: bool = True,
    ) -> None:
        self.token = token
        self.bot_id = bot_id if bot_id is not None else int(token.split(":", 1)[0])
        self.strict_chats = strict_chats
        self.calls: list[Call] = []
        self.deliveries: list[Delivery] = []
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.webhook: dict[str, Any] | None = None
        self.polls_waiting = 0  # getUpdates calls now waiting for an update
        self.in_progress: Counter[str] = Counter()  # calls received, not yet answered
        self.answered_callbacks: dict[str, dict[str, Any]] = {}
        self._queue: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._chats: dict[int, dict[int, ChatMessage]] = {}
        self._chat_info: dict[int, dict[str, Any]] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._next_message_id: dict[int, int] = {}
        self._open_callbacks: set[str] = set()
        self._scripts: dict[str, list[Scripted]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._cond = asyncio.Condition()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None
        self._delivery_task: asyncio.Task[None] | None = None
        self.port = 0

    # -- life cycle --

    async def start(self) -> FakeBotAPI:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._client = ClientSession(timeout=ClientTimeout(total=10))
        self._delivery_task = asyncio.create_task(self._deliver_webhook(), name="fake-webhook")
        return self

    async def close(self) -> None:
        self._closing.set()
        async with self._cond:
            self._cond.notify_all()  # long polls answer [] at once
        if self._delivery_task is not None:
            self._delivery_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._delivery_task
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeBotAPI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """What TELEGRAM_API_URL should be."""
        return f"http://127.0.0.1:{self.port}"

    # -- updates a test sends --

    def message(
        self,
        user_id: int,
        text: str | None = None,
        chat_id: int | None = None,
        language_code: str | None = "ru",
        contact: dict[str, Any] | str | None = None,
        *,
        first_name: str | None = None,
        username: str | None = None,
    ) -> int:
        """Queue a message from a user (in their private chat unless ``chat_id``); returns
        the update_id. ``contact`` is a phone number or a Contact dict."""
        update_id = next(self._update_ids)
        self._queue_update(
            self.make_message(
                user_id,
                text,
                chat_id,
                language_code,
                contact,
                first_name=first_name,
                username=username,
                update_id=update_id,
            )
        )
        return update_id

    def make_message(
        self,
        user_id: int,
        text: str | None = None,
        chat_id: int | None = None,
        language_code: str | None = "ru",
        contact: dict[str, Any] | str | None = None,
        *,
        first_name: str | None = None,
        username: str | None = None,
        update_id: int | None = None,
    ) -> dict[str, Any]:
        """The update :meth:`message` would queue, not queued (to post it somewhere)."""
        user = self._user(user_id, language_code, first_name, username)
        chat = self._chat(chat_id if chat_id is not None else user_id, user)
        message: dict[str, Any] = {
            "message_id": self._take_message_id(chat["id"]),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                length = len(text.split(maxsplit=1)[0])
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if contact is not None:
            if isinstance(contact, str):
                contact = {"phone_number": contact, "first_name": user["first_name"]}
            message["contact"] = {"user_id": user_id, **contact}
        self._store(ChatMessage(message["message_id"], chat["id"], False, message["date"], text))
        return {
            "update_id": update_id if update_id is not None else next(self._update_ids),
            "message": message,
        }

    def callback(
        self,
        user_id: int,
        data: str,
        message_id: int,
        chat_id: int | None = None,
        language_code: str | None = None,
    ) -> int:
        """Queue a press on an inline button of the bot's message; returns the update_id."""
        update_id = next(self._update_ids)
        self._queue_update(
            self.make_callback(user_id, data, message_id, chat_id, language_code, update_id)
        )
        return update_id

    def make_callback(
        self,
        user_id: int,
        data: str,
        message_id: int,
        chat_id: int | None = None,
        language_code: str | None = None,
        update_id: int | None = None,
    ) -> dict[str, Any]:
        known = self._users.get(user_id, {})
        user = self._user(user_id, language_code or known.get("language_code", "ru"))
        chat_id = chat_id if chat_id is not None else user_id
        chat = self._chat(chat_id, user)
        stored = self._chats.get(chat_id, {}).get(message_id)
        if stored is not None and stored.raw:
            message = stored.raw
        else:  # Telegram sends an "inaccessible message" for what it no longer has
            message = {"message_id": message_id, "date": 0, "chat": chat}
        query_id = f"cq{next(self._callback_ids)}"
        self._open_callbacks.add(query_id)
        return {
            "update_id": update_id if update_id is not None else next(self._update_ids),
            "callback_query": {
                "id": query_id,
                "from": user,
                "chat_instance": str(chat_id),
                "message": message,
                "data": data,
            },
        }

    def pre_checkout(
        self, user_id: int, payload: str, total_amount: int, currency: str = "RUB"
    ) -> int:
        """Queue the pre-checkout query Telegram sends before charging; returns update_id."""
        update_id = next(self._update_ids)
        user = self._user(user_id, self._users.get(user_id, {}).get("language_code", "ru"))
        self._queue_update(
            {
                "update_id": update_id,
                "pre_checkout_query": {
                    "id": f"pcq{update_id}",
                    "from": user,
                    "currency": currency,
                    "total_amount": total_amount,
                    "invoice_payload": payload,
                },
            }
        )
        return update_id

    def enqueue(self, update: dict[str, Any]) -> int:
        """Queue a raw update (any type); its update_id is assigned here."""
        update = {**update, "update_id": next(self._update_ids)}
        self._queue_update(update)
        return int(update["update_id"])

    def known_chat(self, chat_id: int, language_code: str | None = "ru") -> None:
        """Let the bot write to a chat that has not written to it first."""
        user = self._user(chat_id, language_code) if chat_id > 0 else None
        self._chat(chat_id, user)

    @property
    def pending(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by an offset (or not yet delivered to the webhook)."""
        return list(self._queue)

    # -- what a test reads --

    def script(self, method: str, *responses: Scripted) -> None:
        """The next calls of ``method`` get these answers, in order, one each."""
        self._scripts.setdefault(method.lower(), []).extend(responses)

    def mark(self) -> int:
        """A position in :attr:`calls`; pass it as ``after`` to look only at later calls."""
        return len(self.calls)

    def calls_of(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        *,
        after: int = 0,
    ) -> list[Call]:
        method = method.lower()
        return [
            c
            for c in self.calls[after:]
            if c.method.lower() == method and (predicate is None or predicate(c))
        ]

    def sent(self, chat_id: int | None = None, *, after: int = 0) -> list[Call]:
        """Successful sendMessage calls (to one chat)."""
        return self.calls_of(
            "sendMessage",
            lambda c: c.ok and (chat_id is None or int(c.params["chat_id"]) == chat_id),
            after=after,
        )

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        count: int = 1,
        timeout: float = 5,  # noqa: ASYNC109 - a test's deadline, the point of the helper
        *,
        after: int = 0,
    ) -> list[Call]:
        """Wait until ``count`` calls of ``method`` matching ``predicate`` were recorded
        (failed ones count too: check ``call.ok``); returns all the matching calls."""

        def matching() -> list[Call]:
            return self.calls_of(method, predicate, after=after)

        try:
            async with asyncio.timeout(timeout), self._cond:
                await self._cond.wait_for(lambda: len(matching()) >= count)
        except TimeoutError:
            recorded = "\n  ".join(repr(c) for c in self.calls[after:] if c.method != "getUpdates")
            raise AssertionError(
                f"waited {timeout}s for {count} {method} call(s), saw {len(matching())};"
                f" recorded:\n  {recorded or '(nothing)'}"
            ) from None
        return matching()

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float = 5,  # noqa: ASYNC109 - a test's deadline
    ) -> None:
        """Wait until ``condition()`` holds; it is checked after every call and update."""
        try:
            async with asyncio.timeout(timeout), self._cond:
                await self._cond.wait_for(condition)
        except TimeoutError:
            raise AssertionError(f"condition not met within {timeout}s") from None

    async def wait_polling(self, timeout: float = 5) -> None:  # noqa: ASYNC109
        """Wait until the bot is in a long poll, i.e. ready for the next update."""
        await self.wait_until(lambda: self.polls_waiting > 0, timeout)

    def chat(self, chat_id: int) -> list[ChatMessage]:
        """The chat as the user sees it now: messages both ways, edits applied, deletions
        gone, oldest first."""
        return [m for _, m in sorted(self._chats.get(chat_id, {}).items())]

    def bot_messages(self, chat_id: int) -> list[ChatMessage]:
        return [m for m in self.chat(chat_id) if m.from_bot]

    def commands_for(self, language_code: str = "", scope: str = "default") -> list[str]:
        return [c["command"] for c in self.commands.get((scope, language_code), [])]

    # -- internals: state --

    def _user(
        self,
        user_id: int,
        language_code: str | None,
        first_name: str | None = None,
        username: str | None = None,
    ) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name or f"User{user_id}",
        }
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self._users[user_id] = user
        return user

    def _chat(self, chat_id: int, user: dict[str, Any] | None) -> dict[str, Any]:
        if chat_id in self._chat_info:
            return self._chat_info[chat_id]
        if chat_id > 0:
            chat: dict[str, Any] = {"id": chat_id, "type": "private"}
            if user is not None:
                chat["first_name"] = user["first_name"]
        elif chat_id <= -1_000_000_000_000:
            chat = {"id": chat_id, "type": "supergroup", "title": f"Group {chat_id}"}
        else:
            chat = {"id": chat_id, "type": "group", "title": f"Group {chat_id}"}
        self._chat_info[chat_id] = chat
        self._chats.setdefault(chat_id, {})
        return chat

    def _take_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _store(self, message: ChatMessage) -> None:
        self._chats.setdefault(message.chat_id, {})[message.message_id] = message

    def _queue_update(self, update: dict[str, Any]) -> None:
        self._queue.append(update)
        self._notify_soon()

    def _notify_soon(self) -> None:
        async def notify() -> None:
            async with self._cond:
                self._cond.notify_all()

        task = asyncio.get_running_loop().create_task(notify())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": BOT_NAME,
            "username": BOT_USERNAME,
        }

    # -- internals: HTTP --

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        self.in_progress[method] += 1
        async with self._cond:
            self._cond.notify_all()
        try:
            return await self._handle_call(method, params, request)
        finally:
            self.in_progress[method] -= 1

    async def _handle_call(
        self, method: str, params: dict[str, Any], request: web.Request
    ) -> web.Response:
        if request.match_info["token"] != self.token:
            return await self._answer(method, params, 401, None, "Unauthorized")
        scripted = self._next_script(method, params)
        if scripted is not None and scripted.delay:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(scripted.delay):
                    await self._closing.wait()
        if scripted is not None and scripted.is_error:
            return await self._answer(
                method, params, scripted.status, None, scripted.description, scripted.parameters
            )
        if scripted is not None and scripted.result is not None:
            return await self._answer(method, params, 200, scripted.result)
        try:
            result = await self._dispatch(method, params)
        except ApiError as exc:
            return await self._answer(
                method, params, exc.status, None, exc.description, exc.parameters
            )
        return await self._answer(method, params, 200, result)

    def _next_script(self, method: str, params: dict[str, Any]) -> Scripted | None:
        queue = self._scripts.get(method.lower())
        if not queue:
            return None
        for index, scripted in enumerate(queue):
            if scripted.when is None or scripted.when(params):
                return queue.pop(index)
        return None

    async def _answer(
        self,
        method: str,
        params: dict[str, Any],
        status: int,
        result: Any,
        description: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> web.Response:
        if status == 200:
            body: dict[str, Any] = {"ok": True, "result": result}
        else:
            body = {"ok": False, "error_code": status, "description": description or ""}
            if parameters:
                body["parameters"] = parameters
        self.calls.append(Call(method, params, time.monotonic(), time.time(), status, body))
        async with self._cond:
            self._cond.notify_all()
        return web.json_response(body, status=status)

    async def _dispatch(self, method: str, params: dict[str, Any]) -> Any:
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return True  # any other method: accepted, nothing to play
        return await handler(params)

    # -- internals: methods --

    async def _m_getme(self, params: dict[str, Any]) -> Any:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_getupdates(self, params: dict[str, Any]) -> Any:
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active;"
                " use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = max(1, min(100, int(params.get("limit") or 100)))
        timeout = float(params.get("timeout") or 0)
        if offset > 0:  # everything before the offset is confirmed: Telegram forgets it
            self._queue = [u for u in self._queue if u["update_id"] >= offset]
        elif offset < 0:
            self._queue = self._queue[offset:]

        def ready() -> bool:
            return bool(self._queue) or self._closing.is_set()

        if not ready() and timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout), self._cond:
                    self.polls_waiting += 1
                    self._cond.notify_all()
                    try:
                        await self._cond.wait_for(ready)
                    finally:
                        self.polls_waiting -= 1
        return [dict(u) for u in self._queue[:limit]]

    async def _m_setwebhook(self, params: dict[str, Any]) -> Any:
        url = params.get("url") or ""
        if not url:
            return await self._m_deletewebhook(params)
        self.webhook = {
            "url": url,
            "secret_token": params.get("secret_token"),
            "allowed_updates": params.get("allowed_updates"),
            "max_connections": params.get("max_connections"),
        }
        if params.get("drop_pending_updates"):
            self._queue.clear()
        self._notify_soon()
        return True

    async def _m_deletewebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._queue.clear()
        return True

    async def _m_getwebhookinfo(self, params: dict[str, Any]) -> Any:
        hook = self.webhook or {}
        return {
            "url": hook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._queue),
        }

    async def _m_setmycommands(self, params: dict[str, Any]) -> Any:
        key = (_scope_name(params.get("scope")), params.get("language_code") or "")
        commands = params.get("commands") or []
        for command in commands:
            name = str(command.get("command", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[key] = list(commands)
        return True

    async def _m_getmycommands(self, params: dict[str, Any]) -> Any:
        key = (_scope_name(params.get("scope")), params.get("language_code") or "")
        return self.commands.get(key, [])

    async def _m_deletemycommands(self, params: dict[str, Any]) -> Any:
        key = (_scope_name(params.get("scope")), params.get("language_code") or "")
        self.commands.pop(key, None)
        return True

    async def _m_sendmessage(self, params: dict[str, Any]) -> Any:
        chat_id = self._target_chat(params)
        text = str(params.get("text") or "")
        self._check_text(text, params.get("parse_mode"))
        markup = self._check_markup(params.get("reply_markup"))
        return self._new_bot_message(chat_id, {"text": text}, params.get("parse_mode"), markup)

    async def _m_sendinvoice(self, params: dict[str, Any]) -> Any:
        chat_id = self._target_chat(params)
        prices = params.get("prices") or []
        if not prices:
            raise ApiError(400, "Bad Request: invoice prices are empty")
        for key in ("title", "description", "payload", "currency"):
            if not params.get(key):
                raise ApiError(400, f"Bad Request: invoice {key} is empty")
        invoice = {
            "title": params["title"],
            "description": params["description"],
            "start_parameter": params.get("start_parameter") or "",
            "currency": params["currency"],
            "total_amount": sum(int(p["amount"]) for p in prices),
        }
        markup = self._check_markup(params.get("reply_markup"))
        return self._new_bot_message(chat_id, {"invoice": invoice}, None, markup)

    async def _m_answerprecheckoutquery(self, params: dict[str, Any]) -> Any:
        if not params.get("ok") and not params.get("error_message"):
            raise ApiError(400, "Bad Request: error_message is required when ok is false")
        return True

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._open_callbacks:
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is"
                " invalid",
            )
        self._open_callbacks.discard(query_id)
        self.answered_callbacks[query_id] = params
        return True

    async def _m_editmessagetext(self, params: dict[str, Any]) -> Any:
        if params.get("inline_message_id"):
            return True
        stored = self._find(params, "message to edit not found")
        text = str(params.get("text") or "")
        self._check_text(text, params.get("parse_mode"))
        markup = self._check_markup(params.get("reply_markup"))
        if stored.text == text and stored.reply_markup == markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply"
                " markup are exactly the same as a current content and reply markup of the"
                " message",
            )
        stored.text, stored.reply_markup = text, markup
        stored.parse_mode = params.get("parse_mode")
        stored.edits += 1
        return self._render(stored, edited=True)

    async def _m_editmessagereplymarkup(self, params: dict[str, Any]) -> Any:
        if params.get("inline_message_id"):
            return True
        stored = self._find(params, "message to edit not found")
        markup = self._check_markup(params.get("reply_markup"))
        if stored.reply_markup == markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply"
                " markup are exactly the same as a current content and reply markup of the"
                " message",
            )
        stored.reply_markup = markup
        stored.edits += 1
        return self._render(stored, edited=True)

    async def _m_deletemessage(self, params: dict[str, Any]) -> Any:
        stored = self._find(params, "message to delete not found")
        del self._chats[stored.chat_id][stored.message_id]
        return True

    # -- internals: checks and messages --

    def _target_chat(self, params: dict[str, Any]) -> int:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        try:
            chat_id = int(raw)
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None
        if self.strict_chats and chat_id not in self._chat_info:
            if chat_id > 0:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            raise ApiError(400, "Bad Request: chat not found")
        self._chat(chat_id, self._users.get(chat_id))
        return chat_id

    def _check_text(self, text: str, parse_mode: Any) -> None:
        visible = text
        if parse_mode == "HTML":
            problem = html_problem(text)
            if problem is not None:
                raise ApiError(400, f"Bad Request: can't parse entities: {problem}")
            visible = plain(text)
        if not visible.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if _utf16_len(visible) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")

    def _check_markup(self, markup: Any) -> dict[str, Any] | None:
        if not isinstance(markup, dict) or "inline_keyboard" not in markup:
            return None  # reply keyboards and removals are not part of the message
        for row in markup["inline_keyboard"]:
            for button in row:
                data = button.get("callback_data")
                size = len(str(data).encode("utf-8")) if data is not None else 1
                if not 1 <= size <= MAX_CALLBACK_DATA:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
                if not button.get("text"):
                    raise ApiError(400, "Bad Request: inline keyboard button text is empty")
        return markup

    def _find(self, params: dict[str, Any], missing: str) -> ChatMessage:
        try:
            chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, f"Bad Request: {missing}") from None
        stored = self._chats.get(chat_id, {}).get(message_id)
        if stored is None:
            raise ApiError(400, f"Bad Request: {missing}")
        return stored

    def _new_bot_message(
        self,
        chat_id: int,
        content: dict[str, Any],
        parse_mode: Any,
        markup: dict[str, Any] | None,
    ) -> dict[str, Any]:
        message = ChatMessage(
            message_id=self._take_message_id(chat_id),
            chat_id=chat_id,
            from_bot=True,
            date=int(time.time()),
            text=content.get("text"),
            parse_mode=parse_mode if isinstance(parse_mode, str) else None,
            reply_markup=markup,
        )
        message.raw = self._render(message, extra=content)
        self._store(message)
        return message.raw

    def _render(
        self, message: ChatMessage, *, edited: bool = False, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message_id": message.message_id,
            "date": message.date,
            "chat": self._chat_info[message.chat_id],
            "from": self._bot_user(),
        }
        if extra:
            body.update(extra)
        elif message.text is not None:
            body["text"] = message.text
        if edited:
            body["edit_date"] = int(time.time())
        if message.reply_markup is not None:
            body["reply_markup"] = message.reply_markup
        message.raw = body
        return body

    # -- internals: webhook delivery --

    async def _deliver_webhook(self) -> None:
        """Like Telegram with a webhook set: post each queued update to it, in order, with the
        secret header. A refused or failed delivery is recorded in :attr:`deliveries` and the
        update dropped (Telegram would retry later; tests want to see the refusal)."""
        while True:
            async with self._cond:
                await self._cond.wait_for(lambda: self.webhook is not None and bool(self._queue))
                hook, update = dict(self.webhook or {}), self._queue[0]
            headers = {}
            if hook.get("secret_token"):
                headers[SECRET_HEADER] = str(hook["secret_token"])
            assert self._client is not None
            try:
                async with self._client.post(hook["url"], json=update, headers=headers) as resp:
                    await resp.read()
                    delivery = Delivery(update["update_id"], resp.status)
            except (ClientError, TimeoutError) as exc:
                delivery = Delivery(update["update_id"], None, f"{type(exc).__name__}: {exc}")
            async with self._cond:
                if self._queue and self._queue[0] is update:
                    self._queue.pop(0)
                self.deliveries.append(delivery)
                self._cond.notify_all()


def _scope_name(scope: Any) -> str:
    if isinstance(scope, dict):
        return str(scope.get("type", "default"))
    return "default"


async def _read_params(request: web.Request) -> dict[str, Any]:
    """The call's parameters however aiogram (or anyone) sent them, JSON values decoded."""
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
            return params
        form = await request.post()
        for key, value in form.items():
            params[key] = value if not isinstance(value, str) else _decode(key, value)
    else:
        params = {k: _decode(k, v) for k, v in params.items()}
    return params


def _decode(key: str, value: str) -> Any:
    if key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def texts(calls: Iterable[Call]) -> list[str]:
    """The texts of these calls as the user reads them."""
    return [c.text for c in calls if c.text is not None]
