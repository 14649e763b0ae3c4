"""Delivering the outbox: N notifications against the bound Telegram's limits set (N / rate).

    python bench/notify_bench.py [--notifications 10000] [--db sqlite|postgres] [--naive 1000]

Queues ``--notifications`` rows (one per chat, so only the overall limit binds), then lets
the bot's own worker (``bot.delivery.DeliveryWorker``, built by ``bot.app.build`` with the
default policy: 25 messages a second) send them to a local Bot API that answers at once and
notes when each request arrived. Reported: the time from the first send to the last row
marked sent, the bound ``N / rate``, how far above the bound that is, the most requests the
server saw in any one second, and the spread of the gaps between sends.

For comparison in the same run, ``--naive`` rows go out the way a first attempt would do it:
one at a time, ``sleep(1 / rate)`` after each send, the row marked sent in between.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from sqlalchemy import func, insert, select, update  # noqa: E402

from bot import loop  # noqa: E402
from bot.app import build  # noqa: E402
from bot.config import load_settings  # noqa: E402
from bot.pacing import busiest_window  # noqa: E402
from handlers import alerts  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Notification, NotificationState  # noqa: E402

TOKEN = "123456:BENCH-token-not-real"
KIND = "bench_ping"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/ccbot_notify_bench"


class Api:
    """A Bot API that answers at once and keeps the arrival time of every sendMessage."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def answer(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].lower()
        if method == "sendmessage":
            self.arrivals.append(time.monotonic())
            params = await request.json() if request.content_type == "application/json" else {}
            if not params:
                params = dict(await request.post())
            result: Any = {
                "message_id": len(self.arrivals),
                "date": int(time.time()),
                "chat": {"id": int(params.get("chat_id") or 0), "type": "private"},
                "text": "x",
            }
        elif method == "getme":
            result = {"id": 1, "is_bot": True, "first_name": "ccbot", "username": "ccbot"}
        else:
            result = True
        return web.json_response({"ok": True, "result": result})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.answer)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def _render(session: Any, row: Notification, ctx: alerts.AlertContext) -> alerts.Rendered:
    return alerts.Rendered(f"notification {row.id}")


async def prepare_database(kind: str) -> str:
    if kind == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="ccbot-notify-bench-")) / "bench.sqlite3"
        return f"sqlite+aiosqlite:///{path}"
    import asyncpg

    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await conn.execute("DROP DATABASE IF EXISTS ccbot_notify_bench")
        await conn.execute("CREATE DATABASE ccbot_notify_bench")
    finally:
        await conn.close()
    return PG_URL


async def queue(app: Any, count: int, offset: int) -> None:
    rows = [
        {
            "key": f"bench:{offset + n}",
            "kind": KIND,
            "chat_id": 10_000_000 + offset + n,
            "payload": {},
            "state": NotificationState.PENDING,
        }
        for n in range(count)
    ]
    async with app.session_factory() as session, session.begin():
        for start in range(0, len(rows), 1000):
            await session.execute(insert(Notification), rows[start : start + 1000])


async def run_worker(apps: list[Any], api: Api, count: int) -> dict[str, float]:
    """The bot's own worker; with several apps, their workers at once on one queue."""
    api.arrivals.clear()
    started = time.monotonic()
    while True:
        await asyncio.gather(*(app.delivery.drain(3600) for app in apps))
        async with apps[0].session_factory() as session:
            left = await session.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.state != NotificationState.SENT)
            )
        if not left:
            break
        await asyncio.sleep(0.05)
    finished = time.monotonic()
    return summarize(api.arrivals, started, finished, count, apps[0].delivery.policy.rate)


async def run_naive(app: Any, api: Api, count: int, rate: float) -> dict[str, float]:
    """One at a time: send, mark sent, sleep 1/rate."""
    api.arrivals.clear()
    started = time.monotonic()
    async with app.session_factory() as session:
        ids = list(
            await session.scalars(
                select(Notification.id)
                .where(Notification.state == NotificationState.PENDING)
                .order_by(Notification.id)
            )
        )
    for row_id in ids:
        async with app.session_factory() as session, session.begin():
            row = await session.get(Notification, row_id)
            assert row is not None
            message = await app.bot.send_message(row.chat_id, f"notification {row.id}")
            await session.execute(
                update(Notification)
                .where(Notification.id == row_id)
                .values(state=NotificationState.SENT, message_id=message.message_id)
            )
        await asyncio.sleep(1 / rate)
    finished = time.monotonic()
    return summarize(api.arrivals, started, finished, count, rate)


def summarize(
    arrivals: list[float], started: float, finished: float, count: int, rate: float
) -> dict[str, float]:
    assert len(arrivals) == count, (len(arrivals), count)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    elapsed = finished - arrivals[0]
    bound = (count - 1) / rate  # the first message goes at once
    return {
        "count": count,
        "elapsed": elapsed,
        "bound": bound,
        "over": elapsed / bound - 1 if bound else 0.0,
        "rate": (count - 1) / (arrivals[-1] - arrivals[0]) if count > 1 else 0.0,
        "max_1s": busiest_window(arrivals),
        "gap_p50_ms": statistics.median(gaps) * 1000 if gaps else 0.0,
        "gap_p99_ms": statistics.quantiles(gaps, n=100)[98] * 1000 if len(gaps) > 100 else 0.0,
        "first_after_ms": (arrivals[0] - started) * 1000,
    }


def show(label: str, figures: dict[str, float]) -> None:
    print(
        f"{label:>8}: {int(figures['count']):>6} messages in {figures['elapsed']:8.1f} s"
        f" | bound {figures['bound']:7.1f} s | {figures['over'] * 100:+6.2f} %"
        f" | {figures['rate']:5.2f}/s | max {int(figures['max_1s'])} in 1 s"
        f" | gap p50 {figures['gap_p50_ms']:.1f} ms, p99 {figures['gap_p99_ms']:.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=1000, help="rows for the naive loop")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--workers", type=int, default=1, help="workers on one queue (PostgreSQL), one app each"
    )
    parser.add_argument("--redis", help="REDIS_URL: the workers share Telegram's limits there")
    args = parser.parse_args()
    if args.workers > 1 and args.db != "postgres":
        parser.error("several workers need --db postgres")

    alerts.RENDERERS[KIND] = _render
    api = Api()
    await api.start()
    url = await prepare_database(args.db)
    settings = load_settings(
        bot_token=TOKEN,
        telegram_api_url=api.url,
        database_url=url,
        quiet_hours="",
        redis_url=args.redis,
    )
    app = build(settings)
    others = [build(settings) for _ in range(args.workers - 1)]
    try:
        await upgrade(app.engine)
        print(
            f"db={args.db} rate={settings.notify_rate}/s concurrency={settings.notify_concurrency}"
            f" workers={args.workers} shared limits={'redis' if args.redis else 'no'}"
            f" load={[round(x, 2) for x in os.getloadavg()]}"
        )
        if args.naive:
            await queue(app, args.naive, offset=0)
            show("naive", await run_naive(app, api, args.naive, settings.notify_rate))
        await queue(app, args.notifications, offset=args.naive)
        show("worker", await run_worker([app, *others], api, args.notifications))
        print(f"load after: {[round(x, 2) for x in os.getloadavg()]}")
    finally:
        for one in (app, *others):
            await one.close()
        await api.close()


if __name__ == "__main__":
    loop.run(main())  # the bot's own event loop
