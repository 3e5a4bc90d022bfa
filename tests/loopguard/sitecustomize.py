"""Test-only: a node started with ``IVR_TEST_LOOP_GUARD=1`` and this folder first on PYTHONPATH refuses
every database query made on its event loop's thread once it serves calls, and says so on stderr.

Python imports ``sitecustomize`` at start-up.  The guard is armed when the loop watchdog starts (just
before the server logs "listening"), so start-up's own checks (the schema, crash recovery), made before
any call, are allowed.  tests/cluster starts its nodes with it and fails when any node printed
:data:`MARK`: storage reached from the event loop would hold every call of the node.
"""

from __future__ import annotations

import os

MARK = "LOOP GUARD:"  # tests/loopguard/__init__.py reads it

if os.environ.get("IVR_TEST_LOOP_GUARD"):
    import asyncio
    import sys
    import traceback
    from typing import Any

    from ivr.runtime.watchdog import LoopWatchdog
    from ivr.storage.database import PostgresDatabase, SqliteDatabase, StorageError

    armed = False

    def _guarded(transaction: Any) -> Any:
        def guarded(self: Any) -> Any:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return transaction(self)
            if not armed:
                return transaction(self)
            stack = "".join(traceback.format_stack(limit=12))
            sys.stderr.write(f"{MARK} {self.name} queried on the event loop's thread\n{stack}\n")
            raise StorageError(f"{self.name}: queried on the event loop's thread")

        return guarded

    for _cls in (SqliteDatabase, PostgresDatabase):
        _cls.transaction = _guarded(_cls.transaction)  # type: ignore[method-assign]

    _start = LoopWatchdog.start

    def _arm(self: Any, *args: Any, **kwargs: Any) -> Any:
        global armed
        armed = True
        return _start(self, *args, **kwargs)

    LoopWatchdog.start = _arm  # type: ignore[method-assign]
