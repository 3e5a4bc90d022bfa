"""Time the example flow tests: simulated call time against the wall time it takes to run them.

Every test of flows/*.ivrtest runs as ``ivr test`` runs it (the server's call runtime in
virtual time).  A first pass fills the TTS cache; the second, timed, pass prints each test's
simulated call length and its wall time, then the totals.
"""

from __future__ import annotations

import time
from pathlib import Path

from ivr.config import load_config
from ivr.runtime.deployment import load_flow
from ivr.runtime.flowtest import find_test_files, parse_test_file, run_test

FLOWS = Path(__file__).resolve().parents[1] / "flows"


def main() -> None:
    config = load_config(FLOWS / "ivr.toml")
    cases = []
    for path in find_test_files([FLOWS]):
        test_file = parse_test_file(path)
        program = load_flow(test_file.flows, prompt_folders=config.prompt_folders, config=config)
        cases += [(path, program, test) for test in test_file.tests]
    for path, program, test in cases:  # warm-up: renders every prompt into the TTS cache
        run_test(path, program, test, config=config)
    simulated = wall = 0.0
    print(f"{'test':60} {'call s':>8} {'wall ms':>8}")
    for path, program, test in cases:
        began = time.perf_counter()
        result = run_test(path, program, test, config=config)
        took = time.perf_counter() - began
        length = result.trace.duration if result.trace is not None else 0.0
        simulated, wall = simulated + length, wall + took
        print(f"{(path.stem + ': ' + test.name)[:60]:60} {length:8.1f} {took * 1000:8.1f}")
    print(f"{len(cases)} tests: {simulated:.0f} s of calls in {wall:.2f} s wall "
          f"({simulated / wall:.0f} times faster than real time)")


if __name__ == "__main__":
    main()
