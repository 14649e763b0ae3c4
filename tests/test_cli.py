"""The ``ccbot`` command line, run in-process against an SQLite file."""

from __future__ import annotations

import pytest

from bot.cli import main


@pytest.fixture
def db_env(tmp_path, monkeypatch):
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's folder
    return url


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_db_upgrade_and_current(db_env, capsys):
    assert run(capsys, "db", "current")[1].startswith("empty")
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and "up to date" in out
    from storage.migrate import revisions

    assert run(capsys, "db", "current")[1].strip() == revisions()[-1]


def test_staff_add_list_deactivate(db_env, capsys):
    code, out, _ = run(
        capsys, "staff", "add", "--telegram-id", "1001", "--name", "Пётр", "--role", "master"
    )
    assert code == 0 and "1001" in out
    run(capsys, "staff", "add", "--telegram-id", "1002", "--name", "Анна", "--role", "admin")
    code, out, _ = run(capsys, "staff", "list")
    assert "1001\tПётр\tmaster\tactive" in out and "1002\tАнна\tadmin\tactive" in out
    code, out, _ = run(capsys, "staff", "deactivate", "1001")
    assert code == 0 and "deactivated" in out
    assert "1001\tПётр\tmaster\tinactive" in run(capsys, "staff", "list")[1]
    code, _, err = run(capsys, "staff", "deactivate", "999")
    assert code == 1 and "no staff member 999" in err
    # re-adding reactivates with the new role
    run(capsys, "staff", "add", "--telegram-id", "1001", "--name", "Пётр", "--role", "cashier")
    assert "1001\tПётр\tcashier\tactive" in run(capsys, "staff", "list")[1]


def test_staff_changes_are_audited(db_env, capsys):
    import asyncio

    from sqlalchemy import select

    from storage.db import make_engine, make_session_factory
    from storage.models import AuditLog

    run(capsys, "staff", "add", "--telegram-id", "7", "--name", "Ира", "--role", "manager")
    run(capsys, "staff", "deactivate", "7")

    async def actions():
        engine = make_engine(db_env)
        async with make_session_factory(engine)() as s:
            rows = (await s.scalars(select(AuditLog.action).order_by(AuditLog.id))).all()
        await engine.dispose()
        return rows

    assert asyncio.run(actions()) == ["staff.add", "staff.deactivate"]


def test_bad_role_is_refused(db_env, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["staff", "add", "--telegram-id", "1", "--name", "X", "--role", "boss"])
    assert exc.value.code == 2


def test_search_prints_matches_and_problems(db_env, capsys):
    import asyncio

    from services.normalize import parse_phone
    from storage.db import make_engine, make_session_factory
    from storage.migrate import upgrade
    from storage.models import Car, Client, ClientCar, ContactInfo, ContactKind

    async def seed():
        engine = make_engine(db_env)
        await upgrade(engine)
        async with make_session_factory(engine)() as s:
            client = Client(name="Иванов Иван", main_phone=parse_phone("+7 945 123-10-10"))
            client.contacts.append(ContactInfo(kind=ContactKind.MOBILE, value="79451231010"))
            car = Car(name="TOYOTA, COROLLA", plate="Н123АР77", vin="NMTBM28E80R058037")
            s.add_all([client, car])
            await s.flush()
            s.add(ClientCar(client_id=client.id, car_id=car.id))
            await s.commit()
        await engine.dispose()

    asyncio.run(seed())
    code, out, _ = run(capsys, "search", "n123ap")
    assert code == 0
    assert "cars: 1" in out and "Н123АР77" in out and "NMTBM28E80R058037" in out
    code, out, _ = run(capsys, "search", "8", "945", "123-10-10")
    assert "clients: 1" in out and "+7 (945) 123-10-10" in out
    code, _, err = run(capsys, "search", "x" * 200)
    assert code == 2 and "too long" in err
    code, _, err = run(capsys, "search", "иван", "--filters", "vip")
    assert code == 2 and "unknown filter" in err
    code, out, _ = run(capsys, "search", "иван", "--box", "car")
    assert "clients: 0" in out and "cars: 0" in out


def test_demo_data_twice_says_why_without_a_traceback(db_env, capsys):
    assert run(capsys, "demo-data", "--clients", "20")[0] == 0
    code, _, err = run(capsys, "demo-data", "--clients", "20")
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("ccbot demo-data: the database already has 20 clients")
    assert "Traceback" not in err


def test_demo_bookings_use_the_bays_of_the_settings(db_env, capsys, monkeypatch, tmp_path):
    """The demo books the bays the booking screens offer (BOOKING_BAYS), more only when a
    day is full."""
    import sqlite3

    monkeypatch.setenv("BOOKING_BAYS", "Пост 1,Пост 2,Шиномонтаж")
    assert run(capsys, "demo-data", "--clients", "2000")[0] == 0
    with sqlite3.connect(tmp_path / "cli.sqlite3") as conn:
        bays = {bay for (bay,) in conn.execute("SELECT DISTINCT bay FROM bookings")}
    assert {"Пост 1", "Пост 2", "Шиномонтаж"} <= bays
    assert all(
        bay in {"Пост 1", "Пост 2", "Шиномонтаж"} or bay.startswith("Пост ") for bay in bays
    )
    assert "Развал-схождение" not in bays
