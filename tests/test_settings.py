"""A wrong or missing setting stops ``ccbot`` with exit code 2 and one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import run_webhook
from bot.config import Settings
from tests.e2e_support import TOKEN

CCBOT = Path(sys.executable).with_name("ccbot")


def run_ccbot(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``ccbot`` in an empty folder (no .env) with only ``env`` set among its settings."""
    clean = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    clean.setdefault("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'ccbot.sqlite3'}")
    clean.update(env)
    return subprocess.run(
        [str(CCBOT), *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_about(result: subprocess.CompletedProcess[str], variable: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ccbot: setting {variable} "), lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://root@localhost/ccbot"),
        ("TIMEZONE", "Mars/Olympus_Mons"),
        ("DEFAULT_LOCALE", "de"),
        ("WEBHOOK_SECRET", "has spaces"),
    ],
)
def test_a_bad_setting_exits_2_naming_it(tmp_path: Path, variable: str, value: str) -> None:
    assert_one_line_about(run_ccbot(tmp_path, "db", "current", **{variable: value}), variable)


def test_run_without_a_token(tmp_path: Path) -> None:
    assert_one_line_about(run_ccbot(tmp_path, "run"), "BOT_TOKEN")


@pytest.mark.slow  # imports aiogram in a new process
def test_run_with_a_malformed_token(tmp_path: Path) -> None:
    assert_one_line_about(run_ccbot(tmp_path, "run", BOT_TOKEN="not-a-token"), "BOT_TOKEN")


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({}, "BOT_TOKEN"),
        ({"bot_token": TOKEN}, "WEBHOOK_URL"),
        ({"bot_token": TOKEN, "webhook_url": "https://bot.example.org/hook"}, "WEBHOOK_SECRET"),
    ],
)
async def test_webhook_needs_a_token_a_url_and_a_secret(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    values: dict[str, str],
    variable: str,
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    with pytest.raises(SystemExit) as stopped:
        await run_webhook(settings)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith(f"ccbot: setting {variable} ")


@pytest.mark.slow  # imports aiogram in a new process
def test_a_crash_at_start_does_not_print_the_token(tmp_path: Path) -> None:
    # aiohttp puts the whole URL, token included, in this error's message.
    result = run_ccbot(tmp_path, "run", BOT_TOKEN=TOKEN, TELEGRAM_API_URL="htp://127.0.0.1:9")
    assert result.returncode == 1, result.stderr
    assert "cannot reach the Bot API at htp://127.0.0.1:9 (TELEGRAM_API_URL)" in result.stderr
    assert "Traceback" not in result.stderr  # one line, not a traceback
    assert "NonHttpUrlClientError" in result.stderr and "<BOT_TOKEN>" in result.stderr
    assert TOKEN not in result.stderr and TOKEN.split(":")[1] not in result.stderr
    assert TOKEN not in result.stdout
