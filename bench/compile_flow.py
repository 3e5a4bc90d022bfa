"""Time parse + check + compile of a generated 2,000-line flow (target: under 1 s).

Prints the line count, the number of compiled states, and the best of a few
runs of each phase and of the whole load.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from ivr.dsl import checks
from ivr.dsl.compiler import Compiler, settings_from
from ivr.dsl.loader import load_flow
from ivr.dsl.parser import parse_text

HEADER = """\
timezone Europe/Zurich
voice en-us
switch night
directory staff from "staff.csv"
number default -> start

hours office:
    mon-fri 08:00-12:00, 13:30-17:30
    sat 09:00-12:00
    closed on holidays CH-ZH
    closed 2026-12-24 .. 2027-01-02
    closed when night

sub leave(box):
    say "Please leave a message for {box}."
    voicemail {box}

start:
    when office is open -> menu_0
    otherwise -> closed

closed:
    say "We are closed."
    call leave("200")
"""


def unit(i: int, last: bool) -> str:
    """About 40 lines: a menu, a collect, a step with conditions and a group."""
    nxt = "closed" if last else f"menu_{i + 1}"
    return f"""
menu menu_{i}:
    say "Menu {i}."
    ask "For the next menu press 1, for sales 2, to enter a number 3, for a person 9."
    wait 6s, retry 3 times
    1 or "next" -> {nxt}
    2 or "sales" -> sales_{i}
    3 -> code_{i}
    9 or speech -> directory staff
        else -> transfer to 100 else voicemail 100
    0 -> transfer to 100 for 20s
        busy, no answer -> voicemail 100
        else -> closed
    invalid -> say "Sorry, that is not an option."
    no input -> say "Are you still there?"
    exhausted -> transfer to 100 else voicemail 100

collect code_{i}:
    ask "Enter your code, then press hash."
    digits 4-8, end #
    wait 8s, between 3s, retry 3 times
    then -> check_{i}
    invalid -> say "That code is too short."
    exhausted -> closed

check_{i}:
    when code_{i} >= 5000 and caller starts with "+41" -> sales_{i}
    when code_{i} in ("1234", "4321") or night is on -> closed
    set last_code = code_{i}
    say "Code {{last_code}} noted."
    -> menu_{i}

group sales_{i}:
    ring 201, 202, 203 together for 25s
    then ring 204, 205 in turn for 15s each
    music "moh/"
    no answer -> call leave("20{i % 10}")
    else -> voicemail 200
"""


def generate(lines: int = 2000) -> str:
    parts = [HEADER]
    count = HEADER.count("\n")
    i = 0
    while count < lines:
        chunk = unit(i, last=count + 45 >= lines)
        parts.append(chunk)
        count += chunk.count("\n")
        i += 1
    return "".join(parts)


def best(fn, runs: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    text = generate()
    folder = Path(tempfile.mkdtemp(prefix="ivr-bench-"))
    path = folder / "big.ivr"
    path.write_text(text, encoding="utf-8")
    (folder / "staff.csv").write_text("display name,extension\nAlice,201\n", encoding="utf-8")
    parse_text(text, str(path))  # build the (cached) LALR tables outside the timing
    flow = parse_text(text, str(path))
    settings = settings_from(flow.items, {str(path): folder})
    program = load_flow([path])
    lines = text.count("\n")
    print(f"flow: {lines} lines, {len(program.states)} states, {len(program.warnings)} warnings")
    t_parse = best(lambda: parse_text(text, str(path)))
    t_check = best(lambda: checks.check_items(flow.items, settings))
    t_compile = best(lambda: Compiler(flow.items).compile(settings, {}, {"default": "start"}))
    t_total = best(lambda: load_flow([path]))
    print(f"parse:   {t_parse * 1000:8.1f} ms")
    print(f"check:   {t_check * 1000:8.1f} ms")
    print(f"compile: {t_compile * 1000:8.1f} ms")
    print(f"load_flow (parse + check + compile + table checks): {t_total * 1000:.1f} ms "
          f"({'under' if t_total < 1.0 else 'OVER'} the 1 s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
