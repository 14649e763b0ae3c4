"""The ``ccbot`` command line (also ``python -m bot``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from bot import loop
from bot.config import Settings, SettingsError, exit_on_settings_error, load_settings

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccbot", description="Clients & Cars: the car shop's clients and cars in Telegram"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="run the bot (long polling)")
    sub.add_parser("webhook", help="run the bot behind a webhook (WEBHOOK_URL, WEBHOOK_SECRET)")
    sub.add_parser("worker", help="deliver notifications and run the timed jobs, without the bot")

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="bring the schema up to date (Alembic)")
    db_sub.add_parser("current", help="show the schema revision")

    demo = sub.add_parser("demo-data", help="fill the database with a realistic demo shop")
    demo.add_argument("--clients", type=_positive_int, default=1000, help="how many clients")
    demo.add_argument("--seed", type=int, default=1, help="the same seed gives the same data")

    imp = sub.add_parser("import", help="import clients and cars from CSV files")
    imp.add_argument("clients_csv", type=Path, help="clients CSV (UTF-8 or cp1251, ',' or ';')")
    imp.add_argument("cars_csv", type=Path, nargs="?", help="cars CSV")
    imp.add_argument(
        "--skip-bad", action="store_true", help="import the good rows, write the bad ones aside"
    )
    imp.add_argument("--rejects", type=Path, help="where --skip-bad writes the rejected rows")

    prices = sub.add_parser("import-prices", help="import the price list from a CSV file")
    prices.add_argument("prices_csv", type=Path, help="price list CSV (UTF-8 or cp1251)")
    prices.add_argument(
        "--skip-bad", action="store_true", help="import the good rows, write the bad ones aside"
    )
    prices.add_argument("--rejects", type=Path, help="where --skip-bad writes the rejected rows")

    staff = sub.add_parser("staff", help="staff members")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True, metavar="ACTION")
    add = staff_sub.add_parser("add", help="add or update a staff member")
    add.add_argument("--telegram-id", type=int, required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--role", required=True, choices=["admin", "manager", "master", "cashier"])
    add.add_argument("--locale", choices=["ru", "en"])
    staff_sub.add_parser("list", help="list staff members")
    deact = staff_sub.add_parser("deactivate", help="deactivate a staff member")
    deact.add_argument("telegram_id", type=int)

    search = sub.add_parser("search", help="print what the bot would find")
    search.add_argument("text", nargs="+")
    search.add_argument(
        "--box",
        choices=["any", "client", "contact", "car"],
        default="any",
        help="which search box (default: the one that takes anything)",
    )
    search.add_argument("--filters", default="", help="comma-separated: " + _filter_names())
    search.add_argument("--staff", type=int, help="Telegram id of the staff member ('mine')")
    search.add_argument("--limit", type=_positive_int, default=10)
    return parser


def _filter_names() -> str:
    from services.filters import ClientFilter

    return ", ".join(f.value for f in ClientFilter)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


async def _with_engine(settings: Settings, body: Callable[..., Awaitable[int]]) -> int:
    from storage.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        return await body(engine, make_session_factory(engine))
    finally:
        await engine.dispose()


async def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import text

    from storage.migrate import upgrade

    async def body(engine, _factory) -> int:
        if args.db_command == "upgrade":
            await upgrade(engine)
            print("database is up to date")
            return 0
        async with engine.connect() as conn:
            try:
                rev = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar()
            except Exception:
                rev = None
        print(rev or "empty (run: ccbot db upgrade)")
        return 0

    return await _with_engine(settings, body)


async def cmd_demo_data(settings: Settings, args: argparse.Namespace) -> int:
    from services.demo import DemoError, generate
    from storage.migrate import upgrade

    async def body(engine, _factory) -> int:
        await upgrade(engine)
        try:
            with _progress(args.clients, "clients") as tick:
                summary = await generate(
                    engine,
                    clients=args.clients,
                    seed=args.seed,
                    progress=tick,
                    tz=settings.tz,
                    bays=settings.booking_rules().bays,  # the bays the booking screens offer
                )
        except DemoError as exc:
            print(f"ccbot demo-data: {exc}", file=sys.stderr)
            return 1
        print(summary)
        return 0

    return await _with_engine(settings, body)


async def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from services.importer import ImportFailed, import_files
    from storage.migrate import upgrade

    async def body(engine, factory) -> int:
        await upgrade(engine)
        rejects = args.rejects
        if args.skip_bad and rejects is None:
            rejects = args.clients_csv.with_name(args.clients_csv.stem + ".rejects.csv")
        try:
            report = await import_files(
                factory,
                args.clients_csv,
                args.cars_csv,
                skip_bad=args.skip_bad,
                rejects_path=rejects,
                region=settings.default_region,
                progress=lambda label, n: _echo_progress(label, n),
            )
        except ImportFailed as failed:
            print(file=sys.stderr)
            for problem in failed.problems[:50]:
                print(f"ccbot import: {problem}", file=sys.stderr)
            if len(failed.problems) > 50:
                print(f"... and {len(failed.problems) - 50} more", file=sys.stderr)
            hint = "" if args.skip_bad else " (use --skip-bad to import the rest)"
            print(f"nothing was imported{hint}", file=sys.stderr)
            return 1
        print(file=sys.stderr)
        print(report)
        return 0

    return await _with_engine(settings, body)


async def cmd_import_prices(settings: Settings, args: argparse.Namespace) -> int:
    from services.importer import ImportFailed
    from services.pricelist import import_price_list
    from storage.migrate import upgrade

    async def body(engine, factory) -> int:
        await upgrade(engine)
        rejects = args.rejects
        if args.skip_bad and rejects is None:
            rejects = args.prices_csv.with_name(args.prices_csv.stem + ".rejects.csv")
        try:
            report = await import_price_list(
                factory, args.prices_csv, skip_bad=args.skip_bad, rejects_path=rejects
            )
        except ImportFailed as failed:
            for problem in failed.problems[:50]:
                print(f"ccbot import-prices: {problem}", file=sys.stderr)
            if len(failed.problems) > 50:
                print(f"... and {len(failed.problems) - 50} more", file=sys.stderr)
            hint = "" if args.skip_bad else " (use --skip-bad to import the rest)"
            print(f"nothing was imported{hint}", file=sys.stderr)
            return 1
        print(report)
        return 0

    return await _with_engine(settings, body)


async def cmd_staff(settings: Settings, args: argparse.Namespace) -> int:
    from services import staff as staff_service
    from storage.migrate import upgrade
    from storage.models import Role

    async def body(engine, factory) -> int:
        await upgrade(engine)
        async with factory() as session:
            if args.staff_command == "add":
                member = await staff_service.add_or_update(
                    session,
                    telegram_id=args.telegram_id,
                    name=args.name,
                    role=Role(args.role),
                    locale=args.locale,
                    actor=None,
                )
                await session.commit()
                print(f"{member.telegram_id}\t{member.name}\t{member.role}\tactive")
                return 0
            if args.staff_command == "deactivate":
                try:
                    member = await staff_service.deactivate(session, args.telegram_id, actor=None)
                except staff_service.StaffNotFound:
                    print(f"ccbot staff: no staff member {args.telegram_id}", file=sys.stderr)
                    return 1
                await session.commit()
                print(f"{member.telegram_id}\t{member.name}\tdeactivated")
                return 0
            members = await staff_service.list_staff(session)
            if not members:
                print("no staff yet (add one: ccbot staff add --telegram-id ... --role admin)")
            for m in members:
                state = "active" if m.active else "inactive"
                print(f"{m.telegram_id}\t{m.name}\t{m.role}\t{state}")
            return 0

    return await _with_engine(settings, body)


async def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from services import staff as staff_service
    from services.filters import FilterContext, parse_filters
    from services.normalize import format_phone
    from services.search import Box, SearchService, list_clients

    try:
        filters = parse_filters(args.filters)
    except ValueError as exc:
        print(f"ccbot search: {exc}", file=sys.stderr)
        return 2
    text = " ".join(args.text)

    async def body(engine, factory) -> int:
        from storage.migrate import upgrade

        await upgrade(engine)
        async with factory() as session:
            staff_id = None
            if args.staff is not None:
                member = await staff_service.get_by_telegram_id(session, args.staff)
                if member is None:
                    print(f"ccbot search: no staff member {args.staff}", file=sys.stderr)
                    return 2
                staff_id = member.id
            ctx = FilterContext.for_day(staff_id, settings.tz)
            service = SearchService(settings.search_boxes(), region=settings.default_region)
            result = await service.search(
                session, text, box=Box(args.box), filters=filters, ctx=ctx, limit=args.limit
            )
            if result.problem is not None:
                if filters and result.problem.value == "empty":
                    hits, total = await list_clients(session, filters, ctx, limit=args.limit)
                    print(f"clients: {total}")
                    for h in hits:
                        print(f"  #{h.id}\t{h.name}\t{format_phone(h.main_phone or '')}")
                    return 0
                print(f"ccbot search: {_PROBLEMS[result.problem.value]}", file=sys.stderr)
                return 2
            more = "+" if result.more else ""
            print(f"clients: {result.clients_total}{more}")
            for c in result.clients:
                phone = format_phone(c.main_phone) if c.main_phone else ""
                why = f"[{c.field}, {c.tier.name.lower()}]"
                print(f"  #{c.id}\t{c.name}\t{c.inn or ''}\t{phone}\t{why}")
            print(f"cars: {result.cars_total}{more}")
            for car in result.cars:
                code = car.vin or car.body_number or ""
                why = f"[{car.field}, {car.tier.name.lower()}]"
                print(f"  #{car.id}\t{car.name}\t{car.plate or ''}\t{code}\t{why}")
            return 0

    return await _with_engine(settings, body)


_PROBLEMS = {
    "empty": "type something to search for",
    "too_long": "the search text is too long (100 characters at most)",
    "nothing_to_search": "nothing searchable in that text",
}


async def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import run_polling

    settings.require_token()
    await run_polling(settings)
    return 0


async def cmd_webhook(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import run_webhook

    await run_webhook(settings)
    return 0


async def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import run_worker

    settings.require_token()
    await run_worker(settings)
    return 0


def _echo_progress(label: str, count: int) -> None:
    print(f"\r{label}: {count}", end="", file=sys.stderr, flush=True)


class _progress:
    """A tqdm bar on stderr; the callback takes how many were just done."""

    def __init__(self, total: int, unit: str) -> None:
        self.total, self.unit = total, unit

    def __enter__(self) -> Callable[[int], None]:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, unit=f" {self.unit}", file=sys.stderr, smoothing=0.1)
        return self.bar.update

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


COMMANDS: dict[str, Command] = {
    "run": cmd_run,
    "webhook": cmd_webhook,
    "worker": cmd_worker,
    "db": cmd_db,
    "demo-data": cmd_demo_data,
    "import": cmd_import,
    "import-prices": cmd_import_prices,
    "staff": cmd_staff,
    "search": cmd_search,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "run":
            settings.require_token()
    except SettingsError as exc:
        exit_on_settings_error(exc)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return loop.run(COMMANDS[args.command](settings, args))
    except KeyboardInterrupt:
        return 130
