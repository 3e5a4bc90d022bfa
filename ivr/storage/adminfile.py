"""Reading one of the small JSON files admins change in the data folder (switches, follow-me numbers, console users).

A missing file is not an error (it means "nothing set yet": the caller's default); a file that
cannot be read or is not JSON raises the caller's own error, naming the file and what it holds.
What the JSON must look like is the caller's business.  Writers replace these files atomically
(:mod:`ivr.runtime.atomic`), so a reader never sees half a file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_json_file(path: Path, what: str, error: Callable[[str], Exception], default: Any) -> Any:
    """The JSON value in ``path``; ``default`` if there is no such file; else ``error("PATH: cannot read WHAT: ...")``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:  # ValueError: bad UTF-8 (UnicodeDecodeError) or bad JSON
        raise error(f"{path}: cannot read {what}: {exc}") from None
