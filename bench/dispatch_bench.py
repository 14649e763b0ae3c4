"""Updates through the dispatcher: a search message and card navigation, at a million clients.

    python bench/dispatch_bench.py --db bench/out/search-1000000.sqlite3 [--updates 1000]

Runs the bot's real dispatcher (``bot.app.build``: middlewares, i18n, routers, the search
and card services) on the demo database that ``bench/search_bench.py`` builds, with the
Bot API answered at once by a local aiohttp server (so the figures are the bot's own
work plus one loopback HTTP round trip per call). Each update is fed with
``dp.feed_update``, one at a time (latency, and the throughput of one core) and then
``--concurrency`` at a time. Kinds of update:

* ``search``: a staff member's text message: a plate fragment in Latin letters, a phone
  fragment, a VIN tail or a surname, drawn from the data;
* ``card``: a press on a client card or a car card (the card re-read, the role re-checked,
  the message edited).

For comparison in the same run, ``--naive`` search messages go through the same dispatcher
with the search service swapped for a naive ``LIKE '%…%'`` scan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiogram.types import Update  # noqa: E402
from aiohttp import web  # noqa: E402
from sqlalchemy import func, or_, select  # noqa: E402

from bot import loop  # noqa: E402
from bot.app import build  # noqa: E402
from bot.config import load_settings  # noqa: E402
from handlers.callbacks import OpenCar, OpenClient  # noqa: E402
from services import staff as staff_service  # noqa: E402
from services.search import ClientHit, SearchResult, SearchService, Tier  # noqa: E402
from storage.models import Car, Client, ContactInfo, Role  # noqa: E402

TOKEN = "123456:BENCH-token-not-real"
STAFF_ID = 900_000_001
LATIN = dict(zip("АВЕКМНОРСТУХ", "ABEKMHOPCTYX", strict=True))


# --- a Bot API that answers at once ---------------------------------------------------------

# Telegram's answer to sendMessage or editMessageText is the message as it now stands: the
# text as the user reads it, its formatting as entities and the keyboard sent with it; a
# press on a button brings that message again, in the callback query. Both are parsed by
# the bot (aiogram builds a model of every button), so the stand-in answers in full.
_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "tg-spoiler": "spoiler",
    "blockquote": "blockquote",
}


class _Html(HTMLParser):
    """Telegram's HTML as it stores it: plain text and entities, offsets in UTF-16."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.at = 0
        self.open: list[dict[str, Any]] = []
        self.entities: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        entity: dict[str, Any] = {"type": _ENTITY.get(tag, tag), "offset": self.at}
        if tag == "a":
            entity["url"] = dict(attrs).get("href") or ""
        self.open.append(entity)

    def handle_endtag(self, tag: str) -> None:
        entity = self.open.pop()  # the bot's HTML is well formed (tests/botapi.py checks it)
        entity["length"] = self.at - entity["offset"]
        if entity["length"]:
            self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        self.at += len(data.encode("utf-16-le")) // 2


def _message(chat_id: int, message_id: int, params: dict[str, Any]) -> dict[str, Any]:
    text = str(params.get("text") or "")
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": "private"},
        "from": {"id": 1, "is_bot": True, "first_name": "ccbot", "username": "ccbot"},
        "text": text,
    }
    if str(params.get("parse_mode") or "").upper() == "HTML":
        html = _Html()
        html.feed(text)
        html.close()
        message["text"] = "".join(html.text)
        if html.entities:
            message["entities"] = sorted(html.entities, key=lambda e: e["offset"])
    markup = params.get("reply_markup")
    if isinstance(markup, str):  # a form-encoded request carries it as JSON
        markup = json.loads(markup)
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        message["reply_markup"] = markup
    return message


LAST: dict[str, Any] = {}  # the last message the bot sent or edited, for GET /last


async def _answer(request: web.Request) -> web.Response:
    method = request.match_info["method"].lower()
    params: dict[str, Any] = {}
    if request.content_type == "application/json":
        params = await request.json()
    elif request.can_read_body:
        params = dict(await request.post())
    if method in ("sendmessage", "editmessagetext"):
        chat_id = int(params.get("chat_id") or STAFF_ID)
        result: Any = _message(chat_id, int(params.get("message_id") or 1), params)
        if method == "editmessagetext":
            result["edit_date"] = int(time.time())
        LAST["message"] = result
    elif method == "getme":
        result = {"id": 1, "is_bot": True, "first_name": "ccbot", "username": "ccbot"}
    else:
        result = True
    return web.json_response({"ok": True, "result": result})


async def _last(request: web.Request) -> web.Response:
    return web.json_response(LAST.get("message"))


async def last_screen(api_url: str) -> dict[str, Any]:
    """The message the bot last sent or edited, as Telegram holds it: the screen a press
    comes from (a press on a card's button brings the card's message with it)."""
    async with aiohttp.ClientSession() as http, http.get(f"{api_url}/last") as response:
        screen = await response.json()
    if not screen:
        raise RuntimeError("the bot has not sent a screen yet")
    return dict(screen)


def describe(screen: dict[str, Any]) -> str:
    buttons = sum(len(row) for row in screen.get("reply_markup", {}).get("inline_keyboard", []))
    return (
        f"a screen of {len(screen.get('text', ''))} characters, "
        f"{len(screen.get('entities', []))} entities and {buttons} buttons"
    )


async def start_api() -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", _answer)
    app.router.add_get("/last", _last)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


# --- updates ----------------------------------------------------------------------------------

_USER = {"id": STAFF_ID, "is_bot": False, "first_name": "Bench", "language_code": "ru"}
_CHAT = {"id": STAFF_ID, "type": "private"}


# An update is fed as polling feeds it: the JSON Telegram sent, parsed and validated with
# the bot it came to (aiogram's feed_update otherwise dumps and validates it again, to bind it
# to the bot: a cost real updates never pay).
Raw = str


def text_update(update_id: int, text: str) -> Raw:
    return json.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": int(time.time()),
                "chat": _CHAT,
                "from": _USER,
                "text": text,
            },
        }
    )


def press_update(update_id: int, data: str, screen: dict[str, Any] | None = None) -> Raw:
    """A press on a button of ``screen`` (a message as ``last_screen`` gives it), or of a
    bare message."""
    message = screen or {
        "message_id": 1,
        "date": int(time.time()),
        "chat": _CHAT,
        "from": {"id": 1, "is_bot": True, "first_name": "ccbot"},
        "text": "x",
    }
    return json.dumps(
        {
            "update_id": update_id,
            "callback_query": {
                "id": str(update_id),
                "from": _USER,
                "chat_instance": "bench",
                "data": data,
                "message": message,
            },
        }
    )


async def add_bench_staff(app: Any) -> None:
    """The admin whose updates the bench feeds."""
    async with app.session_factory() as s:
        await staff_service.add_or_update(
            s, telegram_id=STAFF_ID, name="Bench", role=Role.ADMIN, locale="ru", actor=None
        )
        await s.commit()


async def sample(session_factory: Any, n: int, seed: int) -> tuple[list[str], list[str]]:
    """Search texts (plate in Latin, phone fragment, VIN tail, surname) and card presses."""
    rng = random.Random(seed)
    async with session_factory() as s:
        top_client = await s.scalar(select(func.max(Client.id)))
        top_car = await s.scalar(select(func.max(Car.id)))
        client_ids = [rng.randint(1, top_client) for _ in range(n)]
        car_ids = [rng.randint(1, top_car) for _ in range(n)]
        cars = (
            await s.execute(
                select(Car.plate, Car.vin, Car.body_number).where(Car.id.in_(car_ids[: n // 2]))
            )
        ).all()
        names = (
            await s.scalars(select(Client.name).where(Client.id.in_(client_ids[: n // 4])))
        ).all()
        phones = (
            await s.scalars(
                select(ContactInfo.value).where(
                    ContactInfo.client_id.in_(client_ids[: n // 4]), ContactInfo.kind == "mobile"
                )
            )
        ).all()
    texts: list[str] = []
    for i in range(n):
        kind = i % 4
        if kind == 0 and cars:
            plate = rng.choice(cars)[0] or "А123ВС"
            texts.append("".join(LATIN.get(ch, ch) for ch in plate[:6]).lower())
        elif kind == 1 and phones:
            p = rng.choice(phones)
            start = rng.randint(1, len(p) - 6)
            texts.append(p[start : start + 6])
        elif kind == 2 and cars:
            code = next((c for c in rng.choice(cars)[1:] if c), "0123456")
            texts.append(code[-6:])
        else:
            texts.append(rng.choice(names).split(" ")[0][:6] if names else "иванов")
    presses = [
        OpenClient(client_id=c).pack() if i % 2 == 0 else OpenCar(car_id=car).pack()
        for i, (c, car) in enumerate(zip(client_ids, car_ids, strict=True))
    ]
    return texts, presses


# --- the naive search, for comparison --------------------------------------------------------


class NaiveSearch(SearchService):
    """What a search without an index does: LIKE '%x%' over the source columns."""

    async def search(self, session: Any, text: str, **kwargs: Any) -> SearchResult:  # type: ignore[override]
        like = f"%{text.lower()}%"
        rows = (
            await session.execute(
                select(
                    Client.id,
                    Client.name,
                    Client.kind,
                    Client.inn,
                    Client.main_phone,
                    Client.last_activity_at,
                )
                .where(
                    or_(
                        func.lower(Client.name).like(like),
                        Client.id.in_(
                            select(ContactInfo.client_id).where(ContactInfo.value.like(like))
                        ),
                    )
                )
                .limit(kwargs.get("limit", 10))
            )
        ).all()
        hits = [
            ClientHit(r[0], r[1], str(r[2]), r[3], r[4], "name", Tier.SUBSTRING, r[5])
            for r in rows
        ]
        return SearchResult(query=text, clients=hits, clients_total=len(hits))


# --- the floor: aiogram alone -----------------------------------------------------------


@dataclass
class Floor:
    """A dispatcher with nothing of ours: no middleware, no database."""

    dp: Any
    bot: Any


def floor_app(api_url: str, *, calls: bool) -> Floor:
    """``calls``: a press answered as a card press is (answer the callback, edit the
    message: two Bot API calls), but without reading anything; else no handler at all."""
    from aiogram import Bot, Dispatcher, Router
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import CallbackQuery, Message

    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url))
    bot = Bot(TOKEN, session=session)
    dp = Dispatcher()
    if calls:
        router = Router()

        @router.callback_query()
        async def press(callback: CallbackQuery) -> None:
            await callback.answer()
            if isinstance(callback.message, Message):
                await callback.message.edit_text("screen")

        dp.include_router(router)
    return Floor(dp, bot)


# --- the Bot API in a process of its own ------------------------------------------------


def _serve_api(port_queue: Any) -> None:
    async def serve() -> None:
        runner, url = await start_api()
        port_queue.put(url)
        await asyncio.Event().wait()
        await runner.cleanup()

    asyncio.run(serve())


def start_api_process() -> tuple[Any, str]:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_serve_api, args=(queue,), daemon=True)
    proc.start()
    return proc, queue.get(timeout=60)


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Figures:
    kind: str
    n: int
    p50: float
    p95: float
    per_second: float
    per_second_concurrent: float | None = None
    cpu_ms: float | None = None  # CPU time of this process (every thread) per update


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


CPU: list[float] = [0.0]  # CPU seconds of the last feed()


def parse(app: Any, raw: Raw) -> Update:
    return Update.model_validate(json.loads(raw), context={"bot": app.bot})


async def feed(app: Any, updates: list[Raw]) -> tuple[list[float], float]:
    latencies = []
    cpu = time.process_time()
    started = time.perf_counter()
    for update in updates:
        t0 = time.perf_counter()
        await app.dp.feed_update(app.bot, parse(app, update))
        latencies.append((time.perf_counter() - t0) * 1000)
    CPU[0] = time.process_time() - cpu
    return latencies, time.perf_counter() - started


async def warm_up(
    app: Any, api_url: str, texts: list[str], presses: list[str], uid: Iterator[int]
) -> dict[str, Any]:
    """Feeds ``texts`` and ``presses`` untimed; returns the screen every measured press
    comes from: the card the first press opened, as the stand-in holds it."""
    await feed(app, [text_update(next(uid), t) for t in texts])
    await feed(app, [press_update(next(uid), presses[0])])
    screen = await last_screen(api_url)
    await feed(app, [press_update(next(uid), p, screen) for p in presses])
    return screen


async def feed_concurrently(app: Any, updates: list[Raw], concurrency: int) -> float:
    queue: asyncio.Queue[Raw] = asyncio.Queue()
    for u in updates:
        queue.put_nowait(u)

    async def worker() -> None:
        while not queue.empty():
            await app.dp.feed_update(app.bot, parse(app, queue.get_nowait()))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=ROOT / "bench/out/search-1000000.sqlite3")
    parser.add_argument("--url", help="a database URL instead of --db (PostgreSQL, say)")
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--naive", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--api-process",
        action="store_true",
        help="answer the Bot API from another process (its CPU is then not counted here)",
    )
    args = parser.parse_args()
    url = args.url or f"sqlite+aiosqlite:///{args.db}"
    if not args.url and not args.db.exists():
        raise SystemExit(f"{args.db} does not exist: build it with bench/search_bench.py")

    proc = runner = None
    if args.api_process:
        proc, api_url = start_api_process()
    else:
        runner, api_url = await start_api()
    load_before = os.getloadavg()
    settings = load_settings(bot_token=TOKEN, database_url=url, telegram_api_url=api_url)
    app = build(settings)
    try:
        await add_bench_staff(app)
        async with app.session_factory() as s:
            clients = await s.scalar(select(func.count()).select_from(Client))
        n = args.updates
        texts, presses = await sample(app.session_factory, n + args.warmup, args.seed)
        uid = iter(range(1, 10**9))
        screen = await warm_up(app, api_url, texts[: args.warmup], presses[: args.warmup], uid)

        results = []

        def press_on_card(update_id: int, data: str) -> Raw:
            return press_update(update_id, data, screen)

        for kind, make, items in (
            ("search message", text_update, texts[args.warmup :]),
            ("card press", press_on_card, presses[args.warmup :]),
        ):
            updates = [make(next(uid), item) for item in items[:n]]
            lat, wall = await feed(app, updates)
            again = [make(next(uid), item) for item in items[:n]]
            cpu = CPU[0] / len(lat) * 1000
            wall_c = await feed_concurrently(app, again, args.concurrency)
            results.append(
                Figures(
                    kind,
                    len(lat),
                    statistics.median(lat),
                    pct(lat, 0.95),
                    len(lat) / wall,
                    len(again) / wall_c,
                    cpu,
                )
            )

        if args.naive > 0:
            app.dp.workflow_data["search_service"] = NaiveSearch()
            naive = [
                text_update(next(uid), t) for t in texts[args.warmup : args.warmup + args.naive]
            ]
            lat, wall = await feed(app, naive)
            results.append(
                Figures(
                    "search message, naive LIKE scan",
                    len(lat),
                    statistics.median(lat),
                    pct(lat, 0.95),
                    len(lat) / wall,
                    cpu_ms=CPU[0] / len(lat) * 1000,
                )
            )

        # The floor, in the same run: aiogram alone, without and with the Bot API calls.
        for label, calls in (
            ("floor: a press through an empty dispatcher", False),
            ("floor: a press answered and edited, nothing read", True),
        ):
            floor = floor_app(api_url, calls=calls)
            try:
                presses_ = [press_update(next(uid), "x", screen) for _ in range(args.warmup + n)]
                await feed(floor, presses_[: args.warmup])
                lat, wall = await feed(floor, presses_[args.warmup :])
                results.append(
                    Figures(
                        label,
                        len(lat),
                        statistics.median(lat),
                        pct(lat, 0.95),
                        len(lat) / wall,
                        cpu_ms=CPU[0] / len(lat) * 1000,
                    )
                )
            finally:
                await floor.bot.session.close()
    finally:
        await app.close()
        if runner is not None:
            await runner.cleanup()
        if proc is not None:
            proc.terminate()

    print(f"\n{clients:,} clients, {url.split('///')[-1] if not args.url else url}")
    where = "another process" if args.api_process else "this process"
    load_after = os.getloadavg()
    print(
        f"Bot API answered in {where}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after ({os.cpu_count()} CPUs)"
    )
    print(f"Presses come from {describe(screen)}")
    print(
        f"\n| update | n | p50 ms | p95 ms | updates/s (one at a time) | "
        f"updates/s ({args.concurrency} at a time) | CPU ms per update | updates/s per CPU "
        "second |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        conc = f"{r.per_second_concurrent:.0f}" if r.per_second_concurrent else "—"
        cpu = f"{r.cpu_ms:.1f} | {1000 / r.cpu_ms:.0f}" if r.cpu_ms else "— | —"
        print(
            f"| {r.kind} | {r.n} | {r.p50:.1f} | {r.p95:.1f} | {r.per_second:.0f} | {conc} "
            f"| {cpu} |"
        )


if __name__ == "__main__":
    loop.run(main())  # the bot's own event loop (bot.loop: uvloop where installed)
