"""Instructions per update through the dispatcher, counted by callgrind instead of timed.

    python bench/dispatch_count.py [--db bench/out/search-1000000.sqlite3] [--updates 100]

The timings of ``bench/dispatch_bench.py`` move by up to a third between runs on a virtual
machine, more than most changes to the bot move them. Valgrind's callgrind counts the
instructions the process executes instead (every thread: aiosqlite's SQLite work is in it),
which is the same for the same code, data and inputs whatever else the machine is doing:
run this script on two revisions with the same database and seed and the difference is
the change's. It counts only the measured updates: the script runs itself under
``valgrind --tool=callgrind --instr-atstart=no`` and switches the count on and off around
each kind of update with callgrind's client requests (a few lines of C from valgrind's own
``callgrind.h``, compiled on first use with the system's C compiler into ``bench/out``).

The updates are the ones ``dispatch_bench.py`` feeds (same sampling, same seed), one at a
time, after a warm-up, with the Bot API answered from another process (not counted). In
the same run, for scale, the floor: a press through an empty dispatcher, and a press
answered and edited with nothing read (aiogram and two Bot API calls).

Needs valgrind (``apt install valgrind``, which brings ``callgrind.h``) and a C compiler.
Under valgrind the bot runs some fifty times slower: 100 updates of each kind take about
a minute.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dispatch_bench as bench

OUT = bench.ROOT / "bench/out"
_UNDER = "CCBOT_UNDER_CALLGRIND"
_COUNTER_C = """
#include <valgrind/callgrind.h>
void count_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void count_stop(const char *label) {
    CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT(label);
}
"""
KINDS = (
    "search message",
    "card press",
    "floor: a press through an empty dispatcher",
    "floor: a press answered and edited, nothing read",
)


def counter() -> Any:
    """The client requests, as a small shared library (built once)."""
    lib = OUT / "callgrind_counter.so"
    if not lib.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise SystemExit("needs a C compiler (cc) to build the callgrind counter")
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "counter.c"
            src.write_text(_COUNTER_C)
            subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    dll = ctypes.CDLL(str(lib))
    dll.count_stop.argtypes = [ctypes.c_char_p]
    return dll


async def measure(args: argparse.Namespace) -> None:
    """Inside valgrind: feed the updates, counting each kind in a dump of its own."""
    dll = counter()
    proc, api_url = bench.start_api_process()
    settings = bench.load_settings(
        bot_token=bench.TOKEN,
        database_url=f"sqlite+aiosqlite:///{args.db}",
        telegram_api_url=api_url,
    )
    app = bench.build(settings)
    try:
        await bench.add_bench_staff(app)
        n, warm = args.updates, args.warmup
        texts, presses = await bench.sample(app.session_factory, n + warm, args.seed)
        uid = iter(range(1, 10**9))
        screen = await bench.warm_up(app, api_url, texts[:warm], presses[:warm], uid)
        print(f"Presses come from {bench.describe(screen)}", flush=True)

        async def counted(target: Any, label: str, updates: list[str]) -> None:
            dll.count_start()
            for raw in updates:
                await target.dp.feed_update(target.bot, bench.parse(target, raw))
            dll.count_stop(label.encode())

        await counted(app, KINDS[0], [bench.text_update(next(uid), t) for t in texts[warm:]])
        await counted(
            app, KINDS[1], [bench.press_update(next(uid), p, screen) for p in presses[warm:]]
        )
        for label, calls in zip(KINDS[2:], (False, True), strict=True):
            floor = bench.floor_app(api_url, calls=calls)
            try:
                updates = [bench.press_update(next(uid), "x", screen) for _ in range(warm + n)]
                await bench.feed(floor, updates[:warm])
                await counted(floor, label, updates[warm:])
            finally:
                await floor.bot.session.close()
    finally:
        await app.close()
        proc.terminate()


def totals(out_base: Path) -> dict[str, int]:
    """Instructions of each dump, by its label (``callgrind.out.N`` files, N ≥ 1)."""
    counts: dict[str, int] = {}
    for path in sorted(out_base.parent.glob(out_base.name + ".*")):
        text = path.read_text(errors="replace")
        label = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
        total = re.search(r"^totals: (\d+)", text, re.M)
        if label and total:
            counts[label.group(1).strip()] = int(total.group(1))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=OUT / "search-1000000.sqlite3")
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep callgrind's dumps in this directory (for callgrind_annotate: which "
        "libraries the instructions went to)",
    )
    args = parser.parse_args()
    if not args.db.exists():
        raise SystemExit(f"{args.db} does not exist: build it with bench/search_bench.py")
    if os.environ.get(_UNDER):
        bench.loop.run(measure(args))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (apt install valgrind)")
    counter()  # built outside valgrind, so its compiler is not run under it
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
        base = (args.keep or Path(tmp)) / "callgrind.out"
        for old in base.parent.glob(base.name + "*"):
            old.unlink()
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={base}",
                sys.executable,
                *sys.argv,
            ],
            env={**os.environ, _UNDER: "1", "PYTHONHASHSEED": "0"},
            stderr=subprocess.DEVNULL,
            check=True,
        )
        counts = totals(base)
    missing = [k for k in KINDS if k not in counts]
    if missing:
        raise SystemExit(f"no count for {missing}: callgrind wrote {sorted(counts)}")
    n = args.updates
    print(f"\n{args.db}, {n} updates of each kind, seed {args.seed}\n")
    print("| update | instructions per update (millions) |")
    print("|---|---:|")
    for kind in KINDS:
        print(f"| {kind} | {counts[kind] / n / 1e6:.2f} |")


if __name__ == "__main__":
    main()
