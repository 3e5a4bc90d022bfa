"""What one ``ivr serve`` process runs with: the deployment file, overridden by the command line.

``ivr serve`` builds a :class:`ServeSettings` from its options (:mod:`ivr.commands.serve`);
the server (:mod:`ivr.runtime.server`) reads it, and a reload (:mod:`ivr.runtime.reload`)
builds the next one by calling :attr:`ServeSettings.reread`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ivr.config import Config


@dataclass(frozen=True)
class ServeSettings:
    """The effective settings: the deployment file, overridden by command-line options."""

    config: Config
    listen: tuple[str, int]
    drain_timeout: float
    max_calls: int = 0  # --max-calls; 0: the deployment file's server.call_limit
    # Re-reads the deployment file with the same command-line options (SIGHUP): new
    # settings and the flow files to load.  None: this server cannot reload.
    reread: Callable[[], tuple[ServeSettings, list[Path]]] | None = None

    @property
    def call_limit(self) -> int:
        return self.max_calls or self.config.server.call_limit
