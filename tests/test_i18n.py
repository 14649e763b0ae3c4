"""The catalogues hold every text the code uses, translated, in both languages."""

from __future__ import annotations

import ast
import os
import re
import shutil
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from bot.i18n import DOMAIN, LANGUAGES, LOCALES_DIR, compile_catalogues, make_i18n, pick_locale

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("bot", "handlers")
GETTEXT_NAMES = frozenset({"_", "__"})
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _used_msgids() -> tuple[dict[str, list[str]], list[str]]:
    """msgid -> where it is used; and the calls whose text is not a plain literal."""
    used: dict[str, list[str]] = {}
    bad: list[str] = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in GETTEXT_NAMES
                ):
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    used.setdefault(first.value, []).append(where)
                else:  # an f-string, a variable, a concatenation: not extractable
                    bad.append(where)
    return used, bad


def _catalogue(lang: str) -> Catalog:
    path = LOCALES_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po_file:
        return read_po(po_file, locale=lang, domain=DOMAIN, abort_invalid=True)


def test_the_scan_finds_the_texts() -> None:
    used, _bad = _used_msgids()
    assert "Main menu" in used
    assert "Something went wrong. Please try again." in used
    assert len(used) >= 20


def test_gettext_is_only_called_with_literals() -> None:
    _used, bad = _used_msgids()
    assert bad == [], "use _('text {x}').format(x=...), never _(f'...') or _(variable)"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_text_in_code_is_translated(lang: str) -> None:
    used, _bad = _used_msgids()
    catalogue = _catalogue(lang)
    missing = [
        f"{msgid!r} ({', '.join(where)})"
        for msgid, where in used.items()
        if msgid not in catalogue
    ]
    untranslated = [
        repr(msgid) for msgid in used if msgid in catalogue and not catalogue[msgid].string
    ]
    assert not missing, f"not in locales/{lang}: " + "; ".join(missing)
    assert not untranslated, f"empty msgstr in locales/{lang}: " + "; ".join(untranslated)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_fuzzy_entries(lang: str) -> None:
    fuzzy = [m.id for m in _catalogue(lang) if m.id and m.fuzzy]
    assert not fuzzy, f"fuzzy entries in locales/{lang} (review, then drop the flag): {fuzzy}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translations_keep_the_placeholders(lang: str) -> None:
    wrong = [
        (m.id, m.string)
        for m in _catalogue(lang)
        if m.id
        and m.string
        and sorted(PLACEHOLDER.findall(str(m.id))) != sorted(PLACEHOLDER.findall(str(m.string)))
    ]
    assert not wrong, f"placeholders differ in locales/{lang}: {wrong}"


def test_the_catalogues_load(tmp_path: Path) -> None:
    target = tmp_path / "locales"
    shutil.copytree(LOCALES_DIR, target, ignore=shutil.ignore_patterns("*.mo"))
    i18n = make_i18n("ru", target)
    assert set(i18n.available_locales) == set(LANGUAGES)
    text = "This bot is for the shop's staff."
    assert i18n.gettext(text, locale="ru") == "Этот бот — для сотрудников автосервиса."
    assert i18n.gettext(text, locale="en") == text


def test_catalogues_are_compiled_when_missing_or_older(tmp_path: Path) -> None:
    target = tmp_path / "locales"
    shutil.copytree(LOCALES_DIR, target, ignore=shutil.ignore_patterns("*.mo"))
    first = compile_catalogues(target)
    assert sorted(p.parent.parent.name for p in first) == sorted(LANGUAGES)
    assert compile_catalogues(target) == []  # up to date: nothing to do

    po = target / "ru" / "LC_MESSAGES" / f"{DOMAIN}.po"
    mo = po.with_suffix(".mo")
    stat = mo.stat()
    os.utime(po, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # edited later
    assert compile_catalogues(target) == [mo]


def test_an_installed_copy_reads_the_catalogues_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Docker image installs the package without ``locales/`` beside it: it compiles
    the catalogues when the image is built (``CCBOT_LOCALES_DIR``) and runs as a user who
    cannot write there."""
    target = tmp_path / "app-locales"
    shutil.copytree(LOCALES_DIR, target, ignore=shutil.ignore_patterns("*.mo"))
    monkeypatch.setenv("CCBOT_LOCALES_DIR", str(target))
    assert len(compile_catalogues()) == len(LANGUAGES)  # the image's build step
    for folder in target.glob("*/LC_MESSAGES"):
        folder.chmod(0o555)
    try:
        i18n = make_i18n("ru")  # at run time: nothing to write, nothing written
        assert i18n.gettext("Main menu", locale="ru") != "Main menu"
    finally:
        for folder in target.glob("*/LC_MESSAGES"):
            folder.chmod(0o755)


def test_fuzzy_entries_are_not_compiled(tmp_path: Path) -> None:
    target = tmp_path / "locales"
    shutil.copytree(LOCALES_DIR, target, ignore=shutil.ignore_patterns("*.mo"))
    po = target / "ru" / "LC_MESSAGES" / f"{DOMAIN}.po"
    po.write_text(
        po.read_text(encoding="utf-8").replace('msgid "Main menu"', '#, fuzzy\nmsgid "Main menu"'),
        encoding="utf-8",
    )
    i18n = make_i18n("ru", target)
    assert i18n.gettext("Main menu", locale="ru") == "Main menu"  # the English fallback
    assert i18n.gettext("Change the language", locale="ru") == "Сменить язык"


@pytest.mark.parametrize(
    ("saved", "telegram", "expected"),
    [
        ("en", "ru", "en"),  # the choice made with /lang wins
        (None, "en", "en"),
        (None, "en-US", "en"),
        (None, "ru", "ru"),
        (None, "de", "ru"),  # not ours: the default
        (None, None, "ru"),
        ("xx", "en", "en"),  # a saved value we no longer speak
    ],
)
def test_pick_locale(saved: str | None, telegram: str | None, expected: str) -> None:
    assert pick_locale(saved, telegram, LANGUAGES, "ru") == expected
